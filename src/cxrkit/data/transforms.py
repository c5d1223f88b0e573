"""From a decoded [0,1] image to a model input: resize policy, augmentation, normalisation."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from cxrkit.core.errors import ConfigError
from cxrkit.core.preprocess import Preprocessing


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


@dataclass(frozen=True)
class Augmentation:
    """Training-time augmentation, applied to the [0,1] image after resizing.

    Defaults are mild: CXRs are acquired in a standard position, so large rotations or crops teach
    nothing real. ``hflip`` defaults to 0.5 as in the classic tutorials; set 0 to respect laterality.
    """

    hflip: float = 0.5
    rotation: float = 10.0  # degrees, +/-
    zoom: float = 0.1  # scale in [1 - zoom, 1 + zoom]
    shift: float = 0.05  # fraction of the side
    brightness: float = 0.1
    contrast: float = 0.1

    def __post_init__(self) -> None:
        if not 0 <= self.hflip <= 1:
            raise ConfigError(f"hflip is a probability in [0, 1], got {self.hflip}.")
        for name in ("zoom", "shift", "brightness", "contrast"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"{name} must be in [0, 1), got {getattr(self, name)}.")

    def to_dict(self) -> dict:
        return asdict(self)

    def build(self) -> v2.Compose:
        steps: list = []
        if self.hflip:
            steps.append(v2.RandomHorizontalFlip(self.hflip))
        if self.rotation or self.zoom or self.shift:
            steps.append(
                v2.RandomAffine(
                    degrees=self.rotation,
                    translate=(self.shift, self.shift) if self.shift else None,
                    scale=(1 - self.zoom, 1 + self.zoom) if self.zoom else None,
                    interpolation=v2.InterpolationMode.BILINEAR,
                )
            )
        if self.brightness or self.contrast:
            steps.append(v2.ColorJitter(brightness=self.brightness, contrast=self.contrast))
        return v2.Compose(steps)


NO_AUGMENTATION = Augmentation(hflip=0, rotation=0, zoom=0, shift=0, brightness=0, contrast=0)


class ImageTransform:
    """Callable turning a float32 (H, W) array in [0,1] into a normalised (in_chans, S, S) tensor."""

    def __init__(self, prep: Preprocessing, augmentation: Augmentation | None = None):
        self.prep = prep
        self.augment = augmentation.build() if augmentation else None

    def __call__(self, img: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))[None]
        x = resize(x, self.prep.image_size, self.prep.resize)
        if self.augment is not None:
            x = self.augment(x).clamp_(0.0, 1.0)
        x = (x - self.prep.mean) / self.prep.std
        if self.prep.in_chans == 3:
            x = x.expand(3, -1, -1).contiguous()
        return x
