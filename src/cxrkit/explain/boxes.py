"""From a CAM to bounding boxes: connected regions of the thresholded map."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from cxrkit.core.errors import ConfigError


def cam_to_boxes(
    cam: np.ndarray,
    threshold: float = 0.5,
    max_boxes: int = 3,
    min_area_frac: float = 0.005,
) -> list[dict[str, Any]]:
    """Boxes around the hot regions of a map, best first.

    The map is thresholded at ``threshold`` times its maximum; each 8-connected region of at least
    ``min_area_frac`` of the image becomes one box.

    Args:
        cam: (H, W) map, non-negative (a ``CamResult.cam``).
        threshold: fraction of the map's maximum a pixel must reach, in (0, 1].
        max_boxes: keep at most this many boxes.
        min_area_frac: drop regions smaller than this fraction of H x W (speckle).

    Returns:
        ``[{x, y, w, h, score, area}]`` in the map's pixel coordinates (x = column of the left edge,
        y = row of the top edge), sorted by ``score`` (the region's peak value), then by area.
        An all-zero map gives no boxes.
    """
    cam = np.asarray(cam, dtype=np.float32)
    if cam.ndim != 2:
        raise ConfigError(f"cam_to_boxes needs a 2-D map, got shape {cam.shape}.")
    if not 0 < threshold <= 1:
        raise ConfigError(f"threshold is a fraction of the map's maximum in (0, 1], got {threshold}.")
    if max_boxes < 1:
        return []
    cam = np.nan_to_num(cam, nan=0.0)
    peak = float(cam.max()) if cam.size else 0.0
    if peak <= 0:
        return []
    mask = (cam >= threshold * peak).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    min_area = min_area_frac * cam.shape[0] * cam.shape[1]
    boxes = []
    for i in range(1, n):
        x, y, w, h, area = (int(v) for v in stats[i])
        if area < min_area:
            continue
        score = float(cam[labels == i].max())
        boxes.append({"x": x, "y": y, "w": w, "h": h, "score": round(score, 6), "area": area})
    boxes.sort(key=lambda b: (-b["score"], -b["area"]))
    return boxes[:max_boxes]
