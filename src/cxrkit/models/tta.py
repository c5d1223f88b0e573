"""Test-time augmentation: one definition, applied by every inference path that reads the bundle.

A bundle trained with ``model.tta: hflip`` records ``extra.tta = "hflip"``; the engine (predict, evaluate,
serve, index building), training's validation pass and ``cxr threshold`` then average the logits (and
embeddings) of the image and its mirror image, so thresholds are chosen on exactly what inference computes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from cxrkit.core.errors import ConfigError

TTA_CHOICES = ("none", "hflip")


def check_tta(tta: str) -> str:
    if tta not in TTA_CHOICES:
        raise ConfigError(f"Unknown test-time augmentation {tta!r}. Fix: use one of {', '.join(TTA_CHOICES)}.")
    return tta


def tta_views(x: torch.Tensor, tta: str) -> list[torch.Tensor]:
    """The inputs whose outputs are averaged: the batch itself, and for ``hflip`` its mirror image."""
    return [x] if check_tta(tta) == "none" else [x, x.flip(-1)]


def tta_mean(fn: Callable[[Any], Any], x: Any, tta: str) -> Any:
    """Mean of ``fn`` over the views of ``x`` (a tensor, or a numpy batch for ONNX Runtime).

    ``fn`` may return one array/tensor or a tuple of them (logits, embeddings): each is averaged.
    """
    if check_tta(tta) == "none":
        return fn(x)
    flipped = x.flip(-1) if isinstance(x, torch.Tensor) else x[..., ::-1].copy()
    a, b = fn(x), fn(flipped)
    if isinstance(a, tuple):
        return tuple((u + v) / 2 for u, v in zip(a, b, strict=True))
    return (a + b) / 2


def bundle_tta(extra: dict[str, Any]) -> str:
    """The TTA a bundle was validated with (``extra.tta``; 'none' for bundles from before TTA)."""
    return check_tta(str(extra.get("tta") or "none"))
