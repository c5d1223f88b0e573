"""The inference engine: one forward path for predict, evaluate, explain, timelines and index building.

An ``Engine`` wraps a bundle and runs it with the fastest safe settings of the machine:

- ``backend="torch"``: channels-last memory format, and bf16 autocast where the hardware computes
  bf16 natively (AVX512-BF16/AMX CPUs, recent GPUs) *and* the bundle passed its bf16 accuracy check
  (validation AUROC within ``BF16_AUROC_TOLERANCE`` of fp32, recorded at training or ``cxr threshold``).
  Otherwise fp32: emulated bf16 is slower than fp32, and an unchecked model is not "safe".
- ``backend="onnx"``: ONNX Runtime on an export of the bundle (``cxrkit.models.onnx_export``), cached
  under ``$CXRKIT_HOME/onnx/`` by the weights' sha256, so it is exported once per model.

Both backends compute logits and penultimate embeddings in one pass. Tables are decoded and
preprocessed by DataLoader worker processes while the model runs (``default_workers``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from cxrkit.core.errors import ConfigError
from cxrkit.core.preprocess import Preprocessing
from cxrkit.core.task import TaskType
from cxrkit.data.table import CxrTable
from cxrkit.data.torch_dataset import CxrImageDataset
from cxrkit.data.transforms import ImageTransform
from cxrkit.models.bundle import Bundle
from cxrkit.models.heads import logits_to_proba
from cxrkit.models.registry import embed

log = logging.getLogger(__name__)

BACKENDS = ("torch", "onnx")
PRECISIONS = ("auto", "fp32", "bf16")
BF16_AUROC_TOLERANCE = 0.002


def choose_device(requested: str | None = None) -> torch.device:
    """The device inference runs on: ``requested`` if given, else CUDA when present, else CPU."""
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def native_bf16(device: torch.device) -> bool:
    """True where bf16 matmuls/convolutions run in hardware (else autocast would only emulate them)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        cpu = getattr(torch, "cpu", None)
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)
    return False


def default_workers() -> int:
    """DataLoader decode workers: one per core left over by the model (none on a single core), at most 4."""
    return max(0, min(4, (os.cpu_count() or 1) - 1))


def table_loader(
    table: CxrTable, prep: Preprocessing, batch_size: int, num_workers: int | None = None, skip_errors: bool = False
) -> DataLoader:
    """Batches of ``table`` decoded and preprocessed in order by worker processes (None: ``default_workers()``).

    ``skip_errors``: batches are ``(x, y, errors)`` with an error message per unreadable image (see
    ``CxrImageDataset``) instead of raising on the first one.
    """
    workers = default_workers() if num_workers is None else num_workers
    workers = min(workers, max(0, (len(table) - 1) // max(1, batch_size)))  # no idle workers
    return DataLoader(
        CxrImageDataset(table, ImageTransform(prep), skip_errors=skip_errors),
        batch_size=batch_size,
        num_workers=workers,
        shuffle=False,
    )


def bf16_check(bundle: Bundle) -> dict[str, Any] | None:
    """The bundle's recorded bf16-vs-fp32 validation check, if any."""
    return (bundle.extra.get("precision_check") or {}).get("bf16")


@dataclass(frozen=True)
class InferenceOptions:
    """How an engine runs. ``precision="auto"`` picks bf16 only where it is native and checked."""

    backend: str = "torch"
    precision: str = "auto"
    device: str | None = None
    batch_size: int = 32
    num_workers: int | None = None  # None: default_workers()
    onnx_path: str | None = None  # an explicit export to use instead of the cache

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"Unknown backend {self.backend!r}. Fix: use one of {', '.join(BACKENDS)}.")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"Unknown precision {self.precision!r}. Fix: use one of {', '.join(PRECISIONS)}.")
        if self.backend == "onnx" and self.precision == "bf16":
            raise ConfigError("The ONNX backend runs in fp32. Fix: use --precision fp32/auto with --backend onnx.")


class Engine:
    """A bundle ready to run: ``probabilities``/``embeddings`` of preprocessed batches, or of whole tables."""

    def __init__(self, bundle: Bundle, options: InferenceOptions | None = None) -> None:
        self.bundle = bundle
        self.options = options or InferenceOptions()
        self.device = choose_device(self.options.device) if self.options.backend == "torch" else torch.device("cpu")
        self.precision = self._resolve_precision()
        self._onnx: Any = None
        if self.options.backend == "onnx":
            from cxrkit.models.onnx_export import OnnxRunner

            self._onnx = OnnxRunner.for_bundle(bundle, self.options.onnx_path)
            size = self._onnx.input_size
            if self.options.onnx_path is not None and size not in (None, bundle.preprocessing.image_size):
                raise ConfigError(
                    f"{self.options.onnx_path} takes {size} px images but the model is preprocessed to "
                    f"{bundle.preprocessing.image_size} px. Fix: export it again with cxr export."
                )
        else:
            bundle.model.to(self.device).eval()
            if self.device.type == "cpu":
                # oneDNN's convolutions are fastest on NHWC; weights are converted once here.
                bundle.model.to(memory_format=torch.channels_last)

    def _resolve_precision(self) -> str:
        opt = self.options
        if opt.backend == "onnx" or opt.precision == "fp32":
            return "fp32"
        if opt.precision == "bf16":
            if not native_bf16(self.device):
                log.warning("bf16 requested but %s has no native bf16: it will be emulated (slow).", self.device)
            return "bf16"
        check = bf16_check(self.bundle)
        if native_bf16(self.device) and check and check.get("ok"):
            return "bf16"
        return "fp32"

    def describe(self) -> dict[str, Any]:
        return {"backend": self.options.backend, "precision": self.precision, "device": str(self.device)}

    # -- batches -------------------------------------------------------------------------------

    @torch.inference_mode()
    def logits_and_embeddings(self, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Raw logits (N x outputs) and penultimate features (N x D) of a preprocessed batch."""
        if self._onnx is not None:
            return self._onnx.run(x.float().cpu().numpy())
        model = self.bundle.model
        x = x.to(self.device, dtype=torch.float32).contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            feats = embed(model, x)
            logits = _head(model)(feats)
        return logits.float().cpu().numpy(), feats.float().cpu().numpy()

    def probabilities(self, x: torch.Tensor) -> np.ndarray:
        """Probabilities N x outputs (binary: N x 1, the positive class) of a preprocessed batch."""
        logits, _ = self.logits_and_embeddings(x)
        return self.to_proba(logits)

    def embeddings(self, x: torch.Tensor) -> np.ndarray:
        """Penultimate features (N x D, not normalised) of a preprocessed batch."""
        return self.logits_and_embeddings(x)[1]

    def to_proba(self, logits: np.ndarray) -> np.ndarray:
        return logits_to_proba(torch.from_numpy(np.asarray(logits, np.float32)), self.bundle.label_space).numpy()

    def warmup(self) -> None:
        """One forward pass on a blank batch: oneDNN/ORT build their kernels on the first call, not a user's."""
        prep = self.bundle.preprocessing
        self.logits_and_embeddings(torch.zeros(1, prep.in_chans, prep.image_size, prep.image_size))

    # -- tables --------------------------------------------------------------------------------

    def loader(self, table: CxrTable, skip_errors: bool = False) -> DataLoader:
        opts = self.options
        return table_loader(table, self.bundle.preprocessing, opts.batch_size, opts.num_workers, skip_errors)

    def run_table(
        self,
        table: CxrTable,
        what: str = "proba",
        progress: bool = False,
        skipped: list[dict[str, Any]] | None = None,
        on_batch: Callable[[int], None] | None = None,
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """``what``: "proba" (N x outputs), "embedding" (N x D) or "both" (a tuple) for every image of ``table``.

        ``skipped``: when a list, each unreadable image is appended as ``{"row", "path", "error"}``
        (logged as a warning) and its row is left out of the output; when None, the first one raises.
        ``on_batch``: called with the number of images after each batch (progress reporting).
        """
        if what not in ("proba", "embedding", "both"):
            raise ValueError(f"what must be proba, embedding or both, not {what!r}")
        logits, feats = [], []
        batches: Any = self.loader(table, skip_errors=skipped is not None)
        if progress:
            from tqdm.auto import tqdm

            batches = tqdm(batches, desc="inference", unit="batch", leave=False)
        row = 0
        for x, _, *errors in batches:
            lo, fe = self.logits_and_embeddings(x)
            if errors and skipped is not None:
                ok = np.array([not e for e in errors[0]], dtype=bool)
                for i in np.flatnonzero(~ok):
                    log.warning("skipped %s", errors[0][i])
                    path = str(table.frame["path"].iat[row + int(i)])
                    skipped.append({"row": row + int(i), "path": path, "error": errors[0][i]})
                lo, fe = lo[ok], fe[ok]
            row += len(x)
            if on_batch is not None:
                on_batch(len(x))
            logits.append(lo)
            feats.append(fe)
        n_out = 1 if self.bundle.label_space.task is TaskType.BINARY else len(self.bundle.classes)
        lo = np.concatenate(logits) if logits else np.zeros((0, n_out), np.float32)
        fe = np.concatenate(feats) if feats else np.zeros((0, 0), np.float32)
        proba = self.to_proba(lo)
        return {"proba": proba, "embedding": fe, "both": (proba, fe)}[what]


def _head(model: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """The output layer that maps penultimate features to logits (timm's ``get_classifier``)."""
    if hasattr(model, "get_classifier"):
        return model.get_classifier()
    if hasattr(model, "head"):
        return model.head
    raise ConfigError(f"{type(model).__name__} exposes no output layer (get_classifier/head).")


def onnx_cache_path(bundle: Bundle) -> Path:
    from cxrkit.core.settings import cxrkit_home

    return cxrkit_home() / "onnx" / f"{bundle.fingerprint[:16]}.onnx"
