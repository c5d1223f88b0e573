"""Preprocessing settings that travel with a model's weights (stored in its bundle)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from cxrkit.core.errors import ConfigError

RESIZE_POLICIES = ("squash", "letterbox")


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
    """

    image_size: int = 224
    resize: str = "squash"
    mean: float = 0.449
    std: float = 0.226
    in_chans: int = 1

    def __post_init__(self) -> None:
        if self.resize not in RESIZE_POLICIES:
            raise ConfigError(f"Unknown resize policy {self.resize!r}; valid: {', '.join(RESIZE_POLICIES)}.")
        if not 8 <= int(self.image_size) <= 2048:
            raise ConfigError(f"image_size must be between 8 and 2048 pixels, got {self.image_size}.")
        if self.std <= 0:
            raise ConfigError(f"std must be positive, got {self.std}.")
        if self.in_chans not in (1, 3):
            raise ConfigError(f"in_chans must be 1 or 3, got {self.in_chans}.")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Preprocessing:
        return cls(**{k: d[k] for k in ("image_size", "resize", "mean", "std", "in_chans") if k in d})
