"""Lungs for the rest of cxrkit: masks of image batches, outline overlays, and lung-aware preprocessing.

- ``lung_masks(images)``: bool masks N x H x W of a float32 [0,1] N x H x W batch (the shipped ``lungs``).
- ``segment_image`` / ``outline_overlay``: what ``cxr segment`` and ``POST /v1/segment`` return.
- ``LungPreprocessor``: ``preprocess: {lungs: crop, margin: 0.1}`` or ``{lungs: mask}`` of a classifier
  recipe, applied to the decoded image before resizing, at training and at inference alike; masks of
  files are cached on disk (by image path, size, mtime and segmenter) so epochs do not re-segment.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from cxrkit.core.errors import ConfigError
from cxrkit.core.files import atomic_write_bytes
from cxrkit.core.preprocess import Preprocessing, register_lung_preprocessing
from cxrkit.core.settings import cxrkit_home
from cxrkit.models.segmentation import Segmenter, describe_mask, load_segmenter

log = logging.getLogger(__name__)
LUNG_MODES = ("crop", "mask")
DEFAULT_SEGMENTER = "lungs"


@functools.lru_cache(maxsize=4)
def get_segmenter(name: str = DEFAULT_SEGMENTER) -> Segmenter:
    """The segmenter ``name`` (a shipped/installed bundle name or a folder), loaded once per process."""
    return load_segmenter(name)


def lung_masks(images: np.ndarray | Sequence[np.ndarray], segmenter: str | Segmenter = DEFAULT_SEGMENTER) -> np.ndarray:
    """Boolean lung masks N x H x W for float32 [0, 1] images N x H x W (the two lungs, holes filled).

    ``segmenter``: a bundle name/folder (default: the shipped ``lungs``) or a loaded ``Segmenter``.
    An image with no lungs (lateral view, not a chest X-ray) gets an (almost) empty mask.
    """
    seg = get_segmenter(str(segmenter)) if not isinstance(segmenter, Segmenter) else segmenter
    arr = [np.asarray(im, np.float32) for im in images]
    if not arr:
        return np.zeros((0, 0, 0), bool)
    masks = seg.masks(arr)
    if len({m.shape for m in masks}) == 1:
        return np.stack(masks)
    # Ragged input sizes: one mask per image, each at its size. Filled one by one: np.array(masks, object)
    # tries to broadcast when the images share their first dimension (256 x 293 beside 256 x 310).
    ragged = np.empty(len(masks), dtype=object)
    for i, m in enumerate(masks):
        ragged[i] = m
    return ragged


def segment_image(image: np.ndarray, segmenter: Segmenter) -> tuple[np.ndarray, dict[str, Any]]:
    """The lung mask of one image and its description (fraction, bbox, lungs_found, warning)."""
    mask = segmenter.masks([np.asarray(image, np.float32)])[0]
    return mask, describe_mask(mask)


def outline_overlay(image: np.ndarray, mask: np.ndarray, box: Sequence[int] | None = None) -> np.ndarray:
    """RGB uint8: the X-ray with the lung outlines in green and the lung box (if given) in yellow."""
    gray = (np.clip(np.asarray(image, np.float32), 0, 1) * 255 + 0.5).astype(np.uint8)
    rgb = np.repeat(gray[..., None], 3, axis=2)
    thick = max(1, round(max(gray.shape) / 256))
    contours, _ = cv2.findContours(np.asarray(mask, np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(rgb, contours, -1, (0, 230, 0), thick, lineType=cv2.LINE_AA)
    if box is not None:
        x0, y0, x1, y1 = (int(v) for v in box)
        cv2.rectangle(rgb, (x0, y0), (x1 - 1, y1 - 1), (255, 210, 0), thick)
    return rgb


def outline_layer(mask: np.ndarray, width: int | None = None) -> np.ndarray:
    """RGBA uint8: the lung outlines in green on a transparent background, to lay over any view of the image."""
    h, w = mask.shape
    layer = np.zeros((h, w, 4), np.uint8)
    thick = width or max(1, round(max(h, w) / 200))
    contours, _ = cv2.findContours(np.asarray(mask, np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(layer, contours, -1, (0, 230, 0, 255), thick, lineType=cv2.LINE_AA)
    return layer


def crop_box(mask: np.ndarray, margin: float) -> tuple[int, int, int, int] | None:
    """The lung box grown by ``margin`` of its width/height on each side, clipped; None without lungs."""
    info = describe_mask(mask)
    if not info["lungs_found"]:
        return None
    x0, y0, x1, y1 = info["bbox"]
    h, w = mask.shape
    dx, dy = round((x1 - x0) * margin), round((y1 - y0) * margin)
    return max(0, x0 - dx), max(0, y0 - dy), min(w, x1 + dx), min(h, y1 + dy)


def apply_lungs(image: np.ndarray, mask: np.ndarray, mode: str, margin: float = 0.1) -> np.ndarray:
    """``crop``: the image cut to the (grown) lung box; ``mask``: the image with everything outside the
    lungs set to 0. An image where no lungs are found is returned whole (a warning is logged)."""
    if mode not in LUNG_MODES:
        raise ConfigError(f"preprocess.lungs must be one of {', '.join(LUNG_MODES)}, got {mode!r}.")
    if mask.shape != image.shape:
        mask = cv2.resize(mask.astype(np.uint8), image.shape[::-1], interpolation=cv2.INTER_NEAREST).astype(bool)
    if not describe_mask(mask)["lungs_found"]:
        log.warning("no lungs found: lung %s preprocessing left the image whole", mode)
        return image
    if mode == "mask":
        return np.where(mask, image, 0.0).astype(np.float32)
    x0, y0, x1, y1 = crop_box(mask, margin)  # type: ignore[misc]
    return np.ascontiguousarray(image[y0:y1, x0:x1])


@dataclass(frozen=True)
class LungSpec:
    """A classifier's lung preprocessing, as its recipe and bundle record it."""

    lungs: str | None = None  # None | crop | mask
    margin: float = 0.1
    segmenter: str = DEFAULT_SEGMENTER

    def __post_init__(self) -> None:
        if self.lungs is not None and self.lungs not in LUNG_MODES:
            raise ConfigError(f"preprocess.lungs must be crop, mask or null, got {self.lungs!r}.")
        if not 0 <= self.margin < 1:
            raise ConfigError(f"preprocess.margin must be in [0, 1), got {self.margin}.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> LungSpec:
        d = d or {}
        return cls(**{k: d[k] for k in ("lungs", "margin", "segmenter") if k in d})


class LungPreprocessor:
    """Callable ``(image, path=None) -> image`` applying a ``LungSpec``; masks of files are cached on disk.

    Picklable (DataLoader workers): the segmenter is loaded lazily in each process that needs it.
    """

    def __init__(self, spec: LungSpec, cache_dir: str | Path | None = None):
        self.spec = spec
        self.cache_dir = Path(cache_dir) if cache_dir else cxrkit_home() / "cache" / "lungs"

    def __call__(self, image: np.ndarray, path: str | None = None) -> np.ndarray:
        if self.spec.lungs is None:
            return image
        mask = self.mask_for(image, path)
        return apply_lungs(image, mask, self.spec.lungs, self.spec.margin)

    def _cache_file(self, path: str) -> Path | None:
        try:
            st = os.stat(path.split("::", 1)[0])
        except OSError:
            return None
        seg = get_segmenter(self.spec.segmenter)
        key = f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}|{seg.fingerprint}"
        digest = hashlib.sha1(key.encode()).hexdigest()
        return self.cache_dir / seg.fingerprint[:12] / digest[:2] / f"{digest}.png"

    def mask_for(self, image: np.ndarray, path: str | None = None) -> np.ndarray:
        """The lung mask of ``image`` (read from the cache when ``path`` was segmented before)."""
        cache = self._cache_file(path) if path else None
        if cache is not None and cache.is_file():
            mask = cv2.imread(str(cache), cv2.IMREAD_GRAYSCALE)
            if mask is not None and mask.shape == image.shape:
                return mask > 0
        mask = get_segmenter(self.spec.segmenter).masks([image])[0]
        if cache is not None:
            ok, buf = cv2.imencode(".png", mask.astype(np.uint8) * 255)
            if ok:
                cache.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(cache, buf.tobytes())
        return mask

    def warm_cache(self, paths: Sequence[str], batch_size: int = 16) -> int:
        """Segment every not-yet-cached file in batches (one pass before training); returns how many."""
        from cxrkit.data.images import load_image

        if self.spec.lungs is None:
            return 0
        todo = [p for p in paths if (c := self._cache_file(p)) is not None and not c.is_file()]
        seg = get_segmenter(self.spec.segmenter)
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            for p, m in zip(chunk, seg.masks([load_image(p) for p in chunk]), strict=True):
                ok, buf = cv2.imencode(".png", m.astype(np.uint8) * 255)
                cache = self._cache_file(p)
                if ok and cache is not None:
                    cache.parent.mkdir(parents=True, exist_ok=True)
                    atomic_write_bytes(cache, buf.tobytes())
        return len(todo)


@functools.lru_cache(maxsize=8)
def _preprocessor(spec: LungSpec) -> LungPreprocessor:
    return LungPreprocessor(spec)


def apply_lung_preprocessing(prep: Preprocessing, image: np.ndarray, path: str | None = None) -> np.ndarray:
    """``prep.lungs`` (crop/mask) applied to a decoded image; the mask of ``path`` is cached on disk."""
    spec = LungSpec(lungs=prep.lungs, margin=prep.lung_margin, segmenter=prep.lung_segmenter)
    return _preprocessor(spec)(image, path)


register_lung_preprocessing(apply_lung_preprocessing)
