"""Preprocessing settings that travel with a model's weights (stored in its bundle)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from cxrkit.core.errors import ConfigError

RESIZE_POLICIES = ("squash", "letterbox")
# Per-image intensity equalisation after the lung crop/mask, before resizing (cxrkit.data.transforms.equalize):
# 'hist' global histogram equalisation, 'clahe' contrast-limited adaptive equalisation (scikit-image),
# 'zscore' an affine per-image standardisation (mean 0.5, standard deviation 0.25).
EQUALIZE_MODES = (None, "hist", "clahe", "zscore")


@dataclass(frozen=True)
class Preprocessing:
    """How a decoded float32 [0,1] grayscale image becomes a model input.

    Attributes:
        image_size: side of the square input in pixels.
        resize: 'squash' (stretch to square, as the Kaggle copies were made) or 'letterbox'
            (keep the aspect ratio, pad with black).
        mean: subtracted after resizing (grayscale; ImageNet's luminance mean by default).
        std: divided by after subtracting the mean.
        in_chans: 1 for grayscale models; 3 repeats the gray channel.
        equalize: None, 'hist', 'clahe' or 'zscore': per-image intensity equalisation of the (lung-cropped)
            image before resizing, meant to remove scanner brightness/contrast; absent in older bundles (None).
    """

    image_size: int = 224
    resize: str = "squash"
    mean: float = 0.449
    std: float = 0.226
    in_chans: int = 1
    lungs: str | None = None  # None | crop | mask: lung-aware preprocessing before resizing
    lung_margin: float = 0.1  # crop: grow the lung box by this fraction of its size on each side
    lung_segmenter: str = "lungs"  # the segmentation bundle that finds the lungs
    equalize: str | None = None  # None | hist | clahe | zscore

    def __post_init__(self) -> None:
        if self.equalize not in EQUALIZE_MODES:
            raise ConfigError(
                f"preprocess equalize must be hist, clahe, zscore or null, got {self.equalize!r}. Fix: "
                "preprocess: {equalize: hist} (global histogram equalisation), {equalize: clahe} (adaptive), "
                "{equalize: zscore} (per-image mean and standard deviation), or leave it out."
            )
        if self.lungs not in LUNG_MODES:
            raise ConfigError(f"preprocess lungs must be crop, mask or null, got {self.lungs!r}.")
        if not 0 <= self.lung_margin < 1:
            raise ConfigError(f"preprocess margin must be in [0, 1), got {self.lung_margin}.")
        if self.resize not in RESIZE_POLICIES:
            raise ConfigError(f"Unknown resize policy {self.resize!r}; valid: {', '.join(RESIZE_POLICIES)}.")
        if not 8 <= int(self.image_size) <= 2048:
            raise ConfigError(f"image_size must be between 8 and 2048 pixels, got {self.image_size}.")
        if self.std <= 0:
            raise ConfigError(f"std must be positive, got {self.std}.")
        if self.in_chans not in (1, 3):
            raise ConfigError(f"in_chans must be 1 or 3, got {self.in_chans}.")

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["equalize"] is None:  # absent means None: bundles without equalisation stay as they were
            del d["equalize"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Preprocessing:
        keys = ("image_size", "resize", "mean", "std", "in_chans", "lungs", "lung_margin", "lung_segmenter")
        keys += ("equalize",)
        return cls(**{k: d[k] for k in keys if k in d})


# Lung-aware preprocessing needs a segmentation model, which lives above this layer: cxrkit.models.lungs
# registers the function that applies it when imported (``import cxrkit.models`` does), and
# ImageTransform looks it up here.
LUNG_MODES = (None, "crop", "mask")
_LUNG_HOOK: list[Callable[[Preprocessing, np.ndarray, str | None], np.ndarray]] = []


def register_lung_preprocessing(fn: Callable[[Preprocessing, np.ndarray, str | None], np.ndarray]) -> None:
    _LUNG_HOOK[:] = [fn]


def lung_preprocessing() -> Callable[[Preprocessing, np.ndarray, str | None], np.ndarray]:
    """The registered ``(prep, image, path) -> image`` function (raises ConfigError when none is)."""
    if not _LUNG_HOOK:
        raise ConfigError(
            "This model crops or masks to the lungs but no lung segmenter is loaded. Fix: import cxrkit.models "
            "(cxr predict/evaluate/serve do) so that cxrkit.models.lungs provides it."
        )
    return _LUNG_HOOK[0]
