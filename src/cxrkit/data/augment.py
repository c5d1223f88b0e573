"""X-ray augmentation: one spec (the recipe's ``augment`` section), built with kornia.

Why kornia: Apache-2.0 and maintained, it works on torch batches, so the same pipeline runs per image in
DataLoader workers or per batch on the training GPU (where it costs next to nothing and leaves the CPU
cores to image decoding). albumentations 2.0.8 is the last MIT release (its successor is AGPL), and
torchvision v2 has no gamma or CLAHE.

Every transform sees a [0, 1] gray image; geometric ones always run (as before), the X-ray-specific
photometric ones each run with probability ``p``. Magnitudes are ranges around "no change", so the
defaults (all new magnitudes 0) reproduce the earlier flip/affine/brightness/contrast pipeline.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from cxrkit.core.errors import ConfigError
from cxrkit.core.preprocess import Preprocessing

PLACES = ("device", "workers")


@dataclass(frozen=True)
class Augmentation:
    """Training-time augmentation of the [0, 1] image after resizing (the recipe's ``augment`` section).

    CXRs are acquired in a standard position, so large rotations or crops teach nothing real; the
    photometric ones mimic what differs between hospitals: exposure (gamma), processing (contrast,
    CLAHE, sharpening), detector noise and JPEG re-compression. ``hflip`` defaults to 0.5 as in the
    classic tutorials; set 0 to respect laterality (the heart is on the left).
    """

    enabled: bool = True
    # "run_on", not "on": YAML 1.1 reads a bare `on:` key as the boolean true.
    run_on: str = "device"  # device: per batch on the training accelerator; workers: per image in DataLoader workers
    hflip: float = 0.5  # probability
    rotation: float = 10.0  # degrees, +/-
    zoom: float = 0.1  # scale in [1 - zoom, 1 + zoom]
    shift: float = 0.05  # fraction of the side
    crop: float = 0.0  # random resized crop keeping [1 - crop, 1] of the area (0: off)
    brightness: float = 0.1  # additive, +/-
    contrast: float = 0.1  # factor in [1 - contrast, 1 + contrast]
    gamma: float = 0.0  # gamma in [1 - gamma, 1 + gamma]
    clahe: float = 0.0  # CLAHE with clip limit drawn from [1, clahe] (0: off)
    blur: float = 0.0  # Gaussian blur, sigma drawn from [0.1, blur] pixels
    sharpen: float = 0.0  # sharpness factor up to this
    noise: float = 0.0  # Gaussian noise, this std
    jpeg: int = 0  # JPEG re-compression at a quality drawn from [jpeg, 100] (0: off)
    p: float = 0.3  # probability of each of gamma, clahe, blur, sharpen, noise, jpeg

    def __post_init__(self) -> None:
        for name in ("hflip", "p"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"augment.{name} is a probability in [0, 1], got {getattr(self, name)}.")
        for name in ("zoom", "shift", "crop", "brightness", "contrast", "gamma"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"augment.{name} must be in [0, 1), got {getattr(self, name)}.")
        for name in ("rotation", "blur", "sharpen", "noise"):
            if getattr(self, name) < 0:
                raise ConfigError(f"augment.{name} must be >= 0, got {getattr(self, name)}.")
        if self.clahe and self.clahe < 1:
            raise ConfigError(f"augment.clahe is the largest CLAHE clip limit (>= 1, e.g. 4) or 0, got {self.clahe}.")
        if not (self.jpeg == 0 or 1 <= self.jpeg <= 100):
            raise ConfigError(f"augment.jpeg is the lowest JPEG quality (1-100) or 0 (off), got {self.jpeg}.")
        if self.run_on not in PLACES:
            raise ConfigError(f"augment.run_on must be one of {list(PLACES)}, got {self.run_on!r}.")

    def to_dict(self) -> dict:
        return asdict(self)

    def build(self) -> nn.Module:
        """The kornia pipeline for (B, 1, H, W) images in [0, 1]; returns [0, 1] images of the same shape."""
        import kornia.augmentation as K

        steps: list[nn.Module] = []
        if self.hflip:
            steps.append(K.RandomHorizontalFlip(p=self.hflip))
        if self.crop:
            steps.append(_SameSizeCrop(self.crop))
        if self.rotation or self.zoom or self.shift:
            steps.append(
                K.RandomAffine(
                    degrees=self.rotation,
                    translate=(self.shift, self.shift) if self.shift else None,
                    scale=(1 - self.zoom, 1 + self.zoom) if self.zoom else None,
                    p=1.0,
                )
            )
        if self.brightness:
            steps.append(K.RandomBrightness(brightness=(1 - self.brightness, 1 + self.brightness), p=1.0))
        if self.contrast:
            steps.append(K.RandomContrast(contrast=(1 - self.contrast, 1 + self.contrast), p=1.0))
        xray: list[nn.Module] = []
        if self.gamma:
            xray.append(K.RandomGamma(gamma=(1 - self.gamma, 1 + self.gamma), p=1.0))
        if self.clahe:
            xray.append(K.RandomClahe(clip_limit=(1.0, float(self.clahe)), p=1.0))
        if self.blur:
            xray.append(K.RandomGaussianBlur((5, 5), sigma=(0.1, float(self.blur)), p=1.0))
        if self.sharpen:
            xray.append(K.RandomSharpness(sharpness=float(self.sharpen), p=1.0))
        if self.noise:
            xray.append(K.RandomGaussianNoise(std=float(self.noise), p=1.0))
        if self.jpeg:
            xray.append(_GrayJPEG(self.jpeg))
        steps += [_Sometimes(op, self.p) for op in xray]
        return _Pipeline(*steps)


class _Pipeline(nn.Sequential):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for step in self:
            x = step(x).clamp(0.0, 1.0)  # gamma, CLAHE and JPEG need [0, 1] input
        return x


class _SameSizeCrop(nn.Module):
    """Random resized crop back to the input size (area [1 - crop, 1], aspect 3:4 to 4:3)."""

    def __init__(self, crop: float):
        super().__init__()
        self.crop = crop
        self.by_size: dict[tuple[int, int], nn.Module] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import kornia.augmentation as K

        size = (int(x.shape[-2]), int(x.shape[-1]))
        if size not in self.by_size:
            self.by_size[size] = K.RandomResizedCrop(size, scale=(1 - self.crop, 1.0), p=1.0)
        return self.by_size[size](x)


class _Sometimes(nn.Module):
    """Apply ``op`` to a random subset of the batch (each image with probability ``p``).

    kornia's own ``p`` still runs the op on the whole batch (JPEG at p=0.3 cost as much as at p=1),
    so the subset is drawn here, with the same torch RNG, and only it is computed.
    """

    def __init__(self, op: nn.Module, p: float):
        super().__init__()
        self.op, self.p = op, p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        chosen = (torch.rand(x.shape[0], device=x.device) < self.p).nonzero().flatten()
        if chosen.numel() == 0:
            return x
        out = x.clone()
        out[chosen] = self.op(x[chosen]).to(x.dtype)
        return out


class _GrayJPEG(nn.Module):
    """kornia's (differentiable) JPEG takes RGB: a gray image goes in as three equal channels."""

    def __init__(self, lowest_quality: int):
        super().__init__()
        import kornia.augmentation as K

        self.jpeg = K.RandomJPEG(jpeg_quality=(float(lowest_quality), 100.0), p=1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = -h % 16, -w % 16  # JPEG works on 16 px macro-blocks
        padded = nn.functional.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x
        rgb = padded.expand(-1, 3, -1, -1)
        return self.jpeg(rgb)[:, :1, :h, :w]


class BatchAugment(nn.Module):
    """Augments a batch of *normalised* model inputs on whatever device they are on.

    The pipeline works on [0, 1] gray images, so the batch is un-normalised with the preprocessing's
    mean/std (exact: normalisation is affine), augmented, and normalised again; 3-channel inputs (equal
    channels) are augmented once and repeated.
    """

    def __init__(self, augmentation: Augmentation, prep: Preprocessing):
        super().__init__()
        self.pipeline = augmentation.build()
        self.mean, self.std = float(prep.mean), float(prep.std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        gray = x[:, :1].float() * self.std + self.mean
        out = (self.pipeline(gray) - self.mean) / self.std
        out = out.to(x.dtype)
        return out.expand(-1, channels, -1, -1).contiguous() if channels > 1 else out
