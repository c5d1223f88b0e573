"""Predictor: a loaded bundle that turns image files or bytes into ranked findings.

This is the one place an inference device is chosen (CUDA when present, else CPU).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cxrkit.core.errors import DataFormatError
from cxrkit.core.task import TaskType
from cxrkit.data.transforms import ImageTransform
from cxrkit.io import read_image, read_image_bytes
from cxrkit.io.decode import IMAGE_EXTENSIONS
from cxrkit.models import Bundle, load_bundle, resolve_bundle
from cxrkit.models.inference import choose_device

log = logging.getLogger(__name__)


def expand_images(inputs: Sequence[str | Path]) -> list[Path]:
    """Files as given; folders expanded (recursively) to their image files, sorted."""
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out.extend(sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in IMAGE_EXTENSIONS))
        elif p.exists():
            out.append(p)
        else:
            raise DataFormatError(f"{p}: no such file or folder.")
    if not out:
        raise DataFormatError(
            f"No images found in {[str(i) for i in inputs]} (looked for {', '.join(IMAGE_EXTENSIONS)})."
        )
    return out


@dataclass
class Predictor:
    bundle: Bundle
    device: torch.device

    @classmethod
    def load(cls, name_or_path: str | Path, device: str | None = None) -> Predictor:
        bundle = load_bundle(resolve_bundle(name_or_path))
        dev = choose_device(device)
        bundle.model.to(dev).eval()
        if dev.type == "cpu":
            bundle.model.to(memory_format=torch.channels_last)
        return cls(bundle, dev)

    @property
    def transform(self) -> ImageTransform:
        return ImageTransform(self.bundle.preprocessing)

    def describe(self) -> dict[str, Any]:
        b = self.bundle
        return {
            "name": b.path.name,
            "architecture": b.architecture,
            "task": b.label_space.task.value,
            "classes": list(b.classes),
            "thresholds": b.thresholds,
            "version": b.code_version,
            "sha256": b.fingerprint,
        }

    @torch.no_grad()
    def probabilities(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Per-class probabilities (N x C; binary gives both classes) for decoded [0,1] images."""
        t = self.transform
        x = torch.stack([t(img) for img in images]).to(self.device)
        x = x.contiguous(memory_format=torch.channels_last)
        p = self.bundle.predict_proba(x)
        if self.bundle.label_space.task is TaskType.BINARY:
            p = np.concatenate([1.0 - p, p], axis=1)
        return p

    def interpret(self, probs: np.ndarray) -> dict[str, Any]:
        """Ranked classes and the findings above threshold for one probability row."""
        space = self.bundle.label_space
        classes = list(space.classes)
        ranked = sorted(
            ({"class": c, "probability": float(probs[i])} for i, c in enumerate(classes)),
            key=lambda r: -r["probability"],
        )
        if space.task is TaskType.BINARY:
            t = self.bundle.thresholds[space.positive]
            findings = [space.positive] if probs[1] >= t else [classes[0]]
        elif space.task is TaskType.MULTICLASS:
            findings = [classes[int(np.argmax(probs))]]
        else:
            findings = [c for i, c in enumerate(classes) if probs[i] >= self.bundle.thresholds.get(c, 0.5)]
            findings.sort(key=lambda c: -probs[classes.index(c)])
        return {
            "ranked": ranked,
            "findings": findings,
            "probabilities": {c: float(probs[i]) for i, c in enumerate(classes)},
        }

    def predict_arrays(self, images: Sequence[np.ndarray]) -> list[dict[str, Any]]:
        return [self.interpret(row) for row in self.probabilities(images)]

    def predict_bytes(self, data: bytes, name: str = "<upload>") -> dict[str, Any]:
        return self.predict_arrays([read_image_bytes(data, name=name)])[0]

    def predict_paths(self, inputs: Sequence[str | Path], batch_size: int = 32) -> list[dict[str, Any]]:
        paths = expand_images(inputs)
        results: list[dict[str, Any]] = []
        for start in range(0, len(paths), batch_size):
            chunk = paths[start : start + batch_size]
            for path, r in zip(chunk, self.predict_arrays([read_image(p) for p in chunk]), strict=True):
                results.append({"path": str(path), **r})
        return results
