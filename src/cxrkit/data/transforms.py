"""From a decoded [0,1] image to a model input: resize policy, augmentation, normalisation."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from skimage import exposure

from cxrkit.core.errors import ConfigError
from cxrkit.core.preprocess import EQUALIZE_MODES, Preprocessing, lung_preprocessing
from cxrkit.data.augment import Augmentation

__all__ = ["Augmentation", "ImageTransform", "equalize", "resize"]


def equalize(img: np.ndarray, mode: str | None) -> np.ndarray:
    """Per-image intensity equalisation of a float (H, W) image in [0, 1]; float32 in [0, 1] out.

    'hist': global histogram equalisation (256 bins over the image's own range); 'clahe': contrast-limited
    adaptive equalisation (scikit-image defaults: tiles of 1/8 of each side, clip limit 0.01); 'zscore': the
    grey levels shifted and scaled to mean 0.5 and standard deviation 0.25 (affine: the histogram's shape is
    kept, values may leave [0, 1]). None: unchanged.
    """
    if mode is None:
        return img
    if mode == "hist":
        out = exposure.equalize_hist(img)
    elif mode == "clahe":
        out = exposure.equalize_adapthist(img)
    elif mode == "zscore":
        sd = float(np.std(img))
        out = 0.5 + 0.25 * (img - np.mean(img)) / sd if sd > 0 else np.full_like(img, 0.5)
    else:
        raise ConfigError(f"Unknown equalize mode {mode!r}; valid: {', '.join(str(m) for m in EQUALIZE_MODES)}.")
    return np.asarray(out, dtype=np.float32)


def resize(img: torch.Tensor, size: int, policy: str = "squash") -> torch.Tensor:
    """Resize a (C, H, W) float tensor to (C, size, size).

    'squash' stretches to a square (how the Kaggle copies were made); 'letterbox' keeps the aspect ratio
    and pads the short side with black (0), centred.
    """
    c, h, w = img.shape
    if policy == "squash":
        if (h, w) == (size, size):
            return img
        return F.interpolate(img[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
    if policy == "letterbox":
        scale = size / max(h, w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        small = F.interpolate(img[None], size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)[0]
        out = img.new_zeros((c, size, size))
        top, left = (size - nh) // 2, (size - nw) // 2
        out[:, top : top + nh, left : left + nw] = small
        return out
    raise ConfigError(f"Unknown resize policy {policy!r}; valid: squash, letterbox.")


class ImageTransform:
    """Callable turning a float32 (H, W) array in [0,1] into a normalised (in_chans, S, S) tensor.

    With an ``augmentation`` the image is augmented here, per image (``augment.run_on: workers``); training
    with ``augment.run_on: device`` leaves this out and augments whole batches with ``BatchAugment``.
    """

    def __init__(self, prep: Preprocessing, augmentation: Augmentation | None = None):
        self.prep = prep
        self.augment = augmentation.build() if augmentation is not None and augmentation.enabled else None
        # Looked up once: a module-level function pickles by name, so spawned workers import its module too.
        self.lungs = lung_preprocessing() if prep.lungs else None

    def __call__(self, img: np.ndarray, path: str | None = None) -> torch.Tensor:
        """``path`` (the image's file) lets lung preprocessing reuse the lung mask cached for it."""
        if self.lungs is not None:
            img = self.lungs(self.prep, img, path)
        if self.prep.equalize is not None:  # on the lung crop (its own histogram), before resizing
            img = equalize(img, self.prep.equalize)
        x = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))[None]
        x = resize(x, self.prep.image_size, self.prep.resize)
        if self.augment is not None:
            with torch.no_grad():
                x = self.augment(x[None])[0]
        x = (x - self.prep.mean) / self.prep.std
        if self.prep.in_chans == 3:
            x = x.expand(3, -1, -1).contiguous()
        return x
