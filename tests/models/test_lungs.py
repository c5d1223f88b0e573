"""Lung masks, boxes, lung-aware crop/mask preprocessing and its on-disk cache; segmentation bundles."""

from __future__ import annotations

import numpy as np
import pytest

from cxrkit.core.errors import BundleError, ConfigError
from cxrkit.models.lungs import LungPreprocessor, LungSpec, apply_lungs, crop_box, get_segmenter, lung_masks
from cxrkit.models.segmentation import clean_mask, describe_mask, load_segmenter
from tests.seg_helpers import constant_segmenter


def _two_lungs(h: int = 40, w: int = 50) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[10:30, 5:20] = True
    m[10:30, 30:45] = True
    return m


def test_describe_mask_box_fraction_and_warning() -> None:
    m = _two_lungs()
    info = describe_mask(m)
    assert info["bbox"] == [5, 10, 45, 30] and info["lungs_found"] and info["warning"] is None
    assert info["lung_fraction"] == pytest.approx(600 / 2000)
    empty = describe_mask(np.zeros((40, 50), bool))
    assert not empty["lungs_found"] and empty["bbox"] is None and "lateral view" in empty["warning"]


def test_clean_mask_keeps_two_lungs_fills_holes_drops_specks() -> None:
    m = _two_lungs()
    m[15, 10] = False  # a hole
    m[2, 2] = True  # a speck
    m[35:37, 47:49] = True  # a small blob (4 px < 10% of a lung)
    out = clean_mask(m)
    assert np.array_equal(out, _two_lungs())


def test_crop_box_and_apply_lungs() -> None:
    img = np.linspace(0, 1, 40 * 50, dtype=np.float32).reshape(40, 50)
    m = _two_lungs()
    assert crop_box(m, 0.1) == (1, 8, 49, 32)  # box 40x20 grown by 4 / 2 px, clipped to the image
    cropped = apply_lungs(img, m, "crop", margin=0.1)
    assert np.array_equal(cropped, img[8:32, 1:49])
    masked = apply_lungs(img, m, "mask")
    assert np.array_equal(masked[m], img[m]) and not masked[~m].any()
    whole = apply_lungs(img, np.zeros_like(m), "crop")  # no lungs: the image is left whole
    assert whole is img
    with pytest.raises(ConfigError, match="crop, mask"):
        LungSpec(lungs="blur")


@pytest.fixture
def half_lungs(tmp_path):
    """A segmenter that marks everything as lung (constant logit), as a bundle folder."""
    return constant_segmenter(tmp_path / "seg_all", logit=6.0)


def test_lung_masks_batch(half_lungs) -> None:
    images = np.random.default_rng(0).random((3, 24, 20)).astype(np.float32)
    masks = lung_masks(images, segmenter=str(half_lungs))
    assert masks.shape == (3, 24, 20) and masks.dtype == bool and masks.all()


def test_lung_masks_ragged_sizes_sharing_a_height(half_lungs) -> None:
    # Images of one height and different widths (seen on the COVID collection): one mask per image, at its size.
    rng = np.random.default_rng(0)
    images = [rng.random((24, 20)).astype(np.float32), rng.random((24, 31)).astype(np.float32)]
    masks = lung_masks(images, segmenter=str(half_lungs))
    assert masks.dtype == object and [m.shape for m in masks] == [(24, 20), (24, 31)]


def test_preprocessor_caches_masks_on_disk(half_lungs, tmp_path, monkeypatch) -> None:
    from PIL import Image

    path = tmp_path / "x.png"
    Image.fromarray((np.random.default_rng(1).random((30, 20)) * 255).astype(np.uint8)).save(path)
    pre = LungPreprocessor(LungSpec(lungs="mask", segmenter=str(half_lungs)), cache_dir=tmp_path / "cache")
    assert pre.warm_cache([str(path)]) == 1
    assert len(list((tmp_path / "cache").rglob("*.png"))) == 1
    assert pre.warm_cache([str(path)]) == 0  # cached: not segmented again
    seg = get_segmenter(str(half_lungs))
    monkeypatch.setattr(seg, "masks", lambda *a, **k: pytest.fail("segmented again despite the cache"))
    img = np.asarray(Image.open(path), np.float32) / 255
    assert np.array_equal(pre(img, str(path)), img)  # all lung: masking keeps everything


def test_segmentation_bundles_are_not_classifiers(half_lungs, monkeypatch, tmp_path) -> None:
    from cxrkit.models.bundle import list_bundles, load_bundle

    with pytest.raises(BundleError, match="segmentation model"):
        load_bundle(half_lungs)
    home = tmp_path / "cxrkit_home"
    (home / "models").mkdir(parents=True, exist_ok=True)
    half_lungs.rename(home / "models" / "mylungs")
    assert "mylungs" in list_bundles("segmentation") and "mylungs" not in list_bundles()
    assert load_segmenter("mylungs").threshold == 0.5
