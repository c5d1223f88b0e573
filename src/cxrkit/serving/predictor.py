"""Predictor: a loaded bundle that turns image files or bytes into ranked findings.

It runs through the shared ``Engine`` (channels-last, bf16 where native and checked, or ONNX Runtime),
warmed up at load so the first request is not the slow one. Image files are decoded by the engine's
DataLoader workers; probabilities are returned per class (``cxrkit.models.heads.class_probabilities``).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cxrkit.core.decisions import decide
from cxrkit.core.errors import CxrkitError, DataFormatError, ImageDecodeError
from cxrkit.core.settings import torch_threads_setting
from cxrkit.data.images import load_size
from cxrkit.data.transforms import ImageTransform
from cxrkit.io import read_image_bytes
from cxrkit.io.decode import IMAGE_EXTENSIONS
from cxrkit.models import Bundle, load_bundle, resolve_bundle
from cxrkit.models.engine import Engine, InferenceOptions, paths_table
from cxrkit.models.heads import class_probabilities

log = logging.getLogger(__name__)

PROGRESS_MIN_IMAGES = 64  # fewer finish in seconds: no progress lines


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


def configure_threads(threads: int | None = None) -> int:
    """Set torch's intra-op CPU threads (default ``$CXRKIT_TORCH_THREADS``, else half the cores, 1 to 4).

    A server answers many small requests at once: a few threads per forward pass keep latency low
    without oversubscribing the cores. On a 2-core machine shared with other work, 2 threads made
    one EfficientNet-Lite0 forward 3-90x slower than 1 (OpenMP threads waiting on busy cores).
    Returns the number set.
    """
    if threads is None:
        threads = torch_threads_setting() or min(4, max(1, (os.cpu_count() or 1) // 2))
    threads = max(1, int(threads))
    torch.set_num_threads(threads)
    return threads


@dataclass
class Predictor:
    """A loaded bundle on its device. Model calls are serialised by ``lock`` (safe to share between threads)."""

    bundle: Bundle
    engine: Engine
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @classmethod
    def load(cls, name_or_path: str | Path, options: InferenceOptions | None = None, warmup: bool = True) -> Predictor:
        return cls.from_bundle(load_bundle(resolve_bundle(name_or_path)), options, warmup=warmup)

    @classmethod
    def from_bundle(cls, bundle: Bundle, options: InferenceOptions | None = None, warmup: bool = True) -> Predictor:
        engine = Engine(bundle, options)
        if warmup:
            engine.warmup()
        return cls(bundle, engine)

    @property
    def device(self) -> torch.device:
        return self.engine.device

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
            "intended_input": b.intended_input.to_dict() if b.intended_input else None,
            **self.engine.describe(),
        }

    def input_warnings(self, image: np.ndarray) -> list[str]:
        """Warnings when a decoded image is outside the bundle's declared ``intended_input`` (else [])."""
        intended = self.bundle.intended_input
        if intended is None:
            return []
        h, w = image.shape[:2]
        return intended.warnings(int(w), int(h))

    def _batch(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        t = self.transform
        return torch.stack([t(img) for img in images])

    def probabilities(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Per-class probabilities (N x C; binary gives both classes) for decoded [0,1] images."""
        with torch.inference_mode():
            x = self._batch(images)  # preprocessing runs outside the lock, concurrently
            with self.lock:
                return self.engine.class_probabilities(x)

    def interpret(self, probs: np.ndarray) -> dict[str, Any]:
        """Ranked classes and the findings above threshold for one probability row."""
        space = self.bundle.label_space
        classes = list(space.classes)
        ranked = sorted(
            ({"class": c, "probability": float(probs[i])} for i, c in enumerate(classes)),
            key=lambda r: -r["probability"],
        )
        decision = decide(space, probs[None, :], self.bundle.thresholds)[0]
        if space.exclusive:
            findings = [classes[int(decision)]]
        else:
            findings = sorted((c for i, c in enumerate(classes) if decision[i]), key=lambda c: -probs[classes.index(c)])
        return {
            "ranked": ranked,
            "findings": findings,
            "probabilities": {c: float(probs[i]) for i, c in enumerate(classes)},
        }

    def predict_arrays(self, images: Sequence[np.ndarray]) -> list[dict[str, Any]]:
        return [self.interpret(row) for row in self.probabilities(images)]

    def predict_bytes(self, data: bytes, name: str = "<upload>") -> dict[str, Any]:
        return self.predict_arrays([read_image_bytes(data, name=name)])[0]

    def predict_paths(
        self, inputs: Sequence[str | Path], skipped: list[dict[str, str]] | None = None, progress: bool = False
    ) -> list[dict[str, Any]]:
        """Predict every image file of ``inputs`` (folders expanded), in order, decoded by the engine's
        DataLoader workers in batches of its ``batch_size``.

        Args:
            skipped: when a list, an unreadable file is appended to it as ``{"path", "error"}``, logged
                as a warning and left out; when None, the first unreadable file raises.
            progress: report progress (a bar on a terminal, else a log line every few seconds) when
                there are more than ``PROGRESS_MIN_IMAGES`` images.

        Raises:
            ImageDecodeError: an unreadable file (``skipped`` None), or none of the files could be read.
        """
        paths = expand_images(inputs)
        bad: list[dict[str, Any]] | None = None if skipped is None else []
        show = progress and len(paths) > PROGRESS_MIN_IMAGES
        with self.lock:
            probs = self.engine.run_table(paths_table(paths, self.bundle.label_space), skipped=bad, progress=show)
        skipped_rows = {s["row"] for s in bad or []}
        if skipped is not None:
            skipped.extend({"path": s["path"], "error": s["error"]} for s in bad or [])
        kept = [p for i, p in enumerate(paths) if i not in skipped_rows]
        if skipped_rows and not kept:
            errors = "; ".join(s["error"] for s in (bad or [])[:5])
            raise ImageDecodeError(f"None of the {len(skipped_rows)} image(s) could be read: {errors}")
        rows = class_probabilities(np.asarray(probs), self.bundle.label_space)
        return [
            {"path": str(path), **self.interpret(row), "warnings": self._size_warnings(path)}
            for path, row in zip(kept, rows, strict=True)
        ]

    def _size_warnings(self, path: Path) -> list[str]:
        """``input_warnings`` of an image file, from its header (its pixels were decoded in a worker)."""
        if self.bundle.intended_input is None:
            return []
        try:
            w, h = load_size(str(path))
        except (CxrkitError, OSError):
            return []  # it decoded, so its prediction stands; the header alone was unreadable
        return self.bundle.intended_input.warnings(int(w), int(h))

    def explain(self, image: np.ndarray, method: str = "gradcam", target: str | None = None) -> Any:
        """A class activation map (``cxrkit.explain.CamResult``) of one decoded image."""
        from cxrkit.explain import compute_cams

        with self.lock:
            return compute_cams(self.bundle, [image], method=method, target=target, engine=self.engine)[0]

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """L2-normalised embeddings (N x D) for similar-case search."""
        from cxrkit.search.embeddings import l2_normalise

        with torch.inference_mode():
            x = self._batch(images)
            with self.lock:
                return l2_normalise(self.engine.embeddings(x))
