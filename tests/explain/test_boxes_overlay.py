from __future__ import annotations

import numpy as np
import pytest

from cxrkit.core.errors import ConfigError
from cxrkit.explain import cam_to_boxes, heatmap, overlay


def _blob(h: int, w: int, cy: float, cx: float, sigma: float, peak: float) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return peak * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))


def test_two_blobs_give_two_boxes_best_first():
    cam = np.maximum(_blob(100, 200, 30, 40, 10, 0.7), _blob(100, 200, 60, 150, 10, 1.0)).astype(np.float32)
    boxes = cam_to_boxes(cam, threshold=0.5)
    assert len(boxes) == 2
    best, second = boxes
    assert best["score"] == pytest.approx(1.0, abs=1e-3) and second["score"] == pytest.approx(0.7, abs=1e-2)
    # the strong blob at (row 60, col 150): box centred there, x is a column, y a row
    assert best["x"] < 150 < best["x"] + best["w"] and best["y"] < 60 < best["y"] + best["h"]
    assert abs(best["x"] + best["w"] / 2 - 150.5) <= 1 and abs(best["y"] + best["h"] / 2 - 60.5) <= 1
    # 0.5 of the max: radius sigma * sqrt(2 ln 2) = 11.8 px for the strong blob
    assert 21 <= best["w"] <= 25 and 21 <= best["h"] <= 25
    assert second["x"] < 40 < second["x"] + second["w"] and second["y"] < 30 < second["y"] + second["h"]
    assert set(best) >= {"x", "y", "w", "h", "score"}
    assert all(isinstance(best[k], int) for k in ("x", "y", "w", "h"))


def test_box_filters():
    cam = np.maximum(_blob(100, 200, 30, 40, 10, 0.7), _blob(100, 200, 60, 150, 10, 1.0)).astype(np.float32)
    assert len(cam_to_boxes(cam, threshold=0.8)) == 1  # the weak blob never reaches 0.8 of the max
    assert len(cam_to_boxes(cam, max_boxes=1)) == 1
    speck = cam.copy()
    speck[90, 5] = 0.95  # one hot pixel: 1 / 20000 of the image, below min_area_frac
    assert len(cam_to_boxes(speck)) == 2
    assert len(cam_to_boxes(speck, min_area_frac=0.0)) == 3
    assert cam_to_boxes(np.zeros((10, 10), np.float32)) == []
    with pytest.raises(ConfigError):
        cam_to_boxes(cam, threshold=0)


def test_overlay_shape_colours_and_label():
    h, w = 120, 90
    img = np.full((h, w), 0.5, np.float32)
    cam = np.zeros((h, w), np.float32)
    cam[80:, 60:] = 1.0
    plain = overlay(img, cam, "")
    assert plain.shape == (h, w, 3) and plain.dtype == np.uint8
    hot, cold = plain[100, 80], plain[40, 20]
    assert hot[0] > hot[2]  # jet: red where the map is high
    assert cold[2] > cold[0]  # blue where it is low
    labelled = overlay(img, cam, "PNEUMONIA 0.93")
    diff = np.abs(labelled.astype(int) - plain.astype(int)).sum(axis=2) > 0
    rows, cols = np.nonzero(diff)
    assert rows.max() < 0.15 * h  # text band stays at the top
    assert rows.max() - rows.min() >= 3 and cols.max() - cols.min() > 0.3 * w  # readable size
    # a map of another size is resized to the image; uint8 images are accepted
    assert overlay((img * 255).astype(np.uint8), cam[::2, ::2], "x").shape == (h, w, 3)
    assert heatmap(cam).shape == (h, w, 3)
