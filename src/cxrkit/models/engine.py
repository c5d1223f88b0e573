"""The inference engine: the one way to run a classifier (predict, evaluate, explain, timelines, index
building, training's validation pass, ``cxr threshold``).

Output convention: probabilities are the model's outputs, N x ``label_space.num_outputs`` (binary: N x 1,
the positive class; see ``cxrkit.models.heads``). Where every class is shown (predict, explain, timelines),
``class_probabilities`` turns them into N x C, one column per class of the bundle.

An ``Engine`` wraps a bundle (or, with ``Engine.for_model``, a model that is not saved yet) and runs it
with the fastest safe settings of the machine, the same ``InferenceOptions`` everywhere:

- ``backend="torch"``: channels-last memory format, and bf16 autocast where the hardware computes
  bf16 natively (AVX512-BF16/AMX CPUs, recent GPUs) *and* the bundle passed its bf16 accuracy check
  (validation AUROC within ``BF16_AUROC_TOLERANCE`` of fp32, recorded at training or ``cxr threshold``).
  Otherwise fp32: emulated bf16 is slower than fp32, and an unchecked model is not "safe".
- ``backend="onnx"``: ONNX Runtime on an export of the bundle (``cxrkit.models.onnx_export``), cached
  under ``$CXRKIT_HOME/onnx/`` by the weights' sha256, so it is exported once per model.

Both backends compute logits and penultimate embeddings in one pass. Tables are decoded and
preprocessed by DataLoader worker processes while the model runs (``default_workers``); an unreadable
image raises ``ImageDecodeError`` naming the file (or is skipped and reported, with ``skipped``).

On a GPU: pinned host memory and non-blocking copies; ``compile=True`` runs the model through
``torch.compile`` (CUDA graphs, mode "reduce-overhead", for batches of at most ``SMALL_BATCH``; batches
are padded to a few fixed shapes so nothing recompiles) with the compilation done in ``warmup``;
``decode="gpu"`` decodes JPEG files with nvJPEG (``cxrkit.models.gpu_decode``); the default ("auto") keeps
decoding in CPU workers, which measured faster end to end on an H200 host (5.1k vs 2.4k img/s, 224 px JPEGs).
bf16 is used on a GPU only from ``BF16_MIN_BATCH`` images up (eager autocast costs more than it saves
on a single image: 247 vs 329 img/s measured on an H200) or when compiled (the casts are fused).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from cxrkit.core.errors import ConfigError, ImageDecodeError
from cxrkit.core.precision import PRECISIONS as NUMERIC_PRECISIONS
from cxrkit.core.preprocess import Preprocessing
from cxrkit.core.progress import Progress
from cxrkit.core.task import LabelSpace
from cxrkit.data.table import CxrTable
from cxrkit.data.torch_dataset import CxrImageDataset
from cxrkit.data.transforms import ImageTransform
from cxrkit.models.bundle import Bundle
from cxrkit.models.heads import class_probabilities, logits_to_proba, output_layer
from cxrkit.models.onnx_export import INT8_FILE, OnnxRunner
from cxrkit.models.registry import embed
from cxrkit.models.tta import bundle_tta, check_tta, tta_mean

log = logging.getLogger(__name__)

BACKENDS = ("torch", "onnx", "onnx-int8")
PRECISIONS = ("auto", *NUMERIC_PRECISIONS)  # auto: bf16 where native and the bundle passed its check
DECODERS = ("auto", "cpu", "gpu")
BF16_AUROC_TOLERANCE = 0.002
SMALL_BATCH = 8  # batches up to this size replay CUDA graphs when compiled
BF16_MIN_BATCH = 16  # eager bf16 autocast on a GPU pays off from this batch size


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


def loader_workers(n_rows: int, batch_size: int, num_workers: int | None = None) -> int:
    workers = default_workers() if num_workers is None else num_workers
    return min(workers, max(0, (n_rows - 1) // max(1, batch_size)))  # no idle workers


def table_loader(
    table: CxrTable,
    prep: Preprocessing,
    batch_size: int,
    num_workers: int | None = None,
    skip_errors: bool = False,
    pin_memory: bool = False,
) -> DataLoader:
    """Batches of ``table`` decoded and preprocessed in order by worker processes (None: ``default_workers()``).

    ``skip_errors``: batches are ``(x, y, errors)`` with an error message per unreadable image (see
    ``CxrImageDataset``) instead of raising on the first one. ``pin_memory``: page-locked batches, so
    copies to a GPU can be non-blocking.
    """
    return DataLoader(
        CxrImageDataset(table, ImageTransform(prep), skip_errors=skip_errors),
        batch_size=batch_size,
        num_workers=loader_workers(len(table), batch_size, num_workers),
        shuffle=False,
        pin_memory=pin_memory,
    )


def paths_table(paths: Sequence[str | Path], label_space: LabelSpace) -> CxrTable:
    """An unlabelled table of image files, for ``Engine.run_table`` (decoded in its workers)."""
    labels = np.full((len(paths), len(label_space.classes)), np.nan, np.float32)
    return CxrTable(pd.DataFrame({"path": [str(p) for p in paths]}), labels, label_space)


def recorded_bf16_check(bundle: Bundle) -> dict[str, Any] | None:
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
    compile: bool = False  # torch.compile (+ CUDA graphs for small batches); compiled in warmup()
    decode: str = "auto"  # JPEG files: "gpu" (nvJPEG), "cpu" (workers); "auto" = cpu (measured faster, PERFORMANCE.md)

    def __post_init__(self) -> None:
        if self.decode not in DECODERS:
            raise ConfigError(f"Unknown decode {self.decode!r}. Fix: use one of {', '.join(DECODERS)}.")
        if self.compile and self.backend != "torch":
            raise ConfigError("compile applies to the torch backend. Fix: drop compile, or use --backend torch.")
        if self.backend not in BACKENDS:
            raise ConfigError(f"Unknown backend {self.backend!r}. Fix: use one of {', '.join(BACKENDS)}.")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"Unknown precision {self.precision!r}. Fix: use one of {', '.join(PRECISIONS)}.")
        if self.backend != "torch" and self.precision == "bf16":
            raise ConfigError(
                f"The {self.backend} backend has its own precision. Fix: use --precision fp32/auto with it."
            )


class Engine:
    """A classifier ready to run: ``probabilities``/``embeddings`` of preprocessed batches, or of whole tables.

    Attributes:
        bundle: the bundle it runs (None for ``Engine.for_model``).
        model, label_space, preprocessing, tta: what it runs, and how its inputs are prepared.
    """

    def __init__(self, bundle: Bundle, options: InferenceOptions | None = None) -> None:
        self._setup(bundle.model, bundle.label_space, bundle.preprocessing, bundle_tta(bundle.extra), bundle, options)

    @classmethod
    def for_model(
        cls,
        model: torch.nn.Module,
        label_space: LabelSpace,
        preprocessing: Preprocessing,
        tta: str = "none",
        options: InferenceOptions | None = None,
    ) -> Engine:
        """An engine over a model that is not a bundle yet (training's validation pass, sanity checks).

        Torch backend only (ONNX exports are made of saved bundles); ``precision="auto"`` is fp32, as
        for a bundle without a bf16 check.
        """
        if options is not None and options.backend != "torch":
            raise ConfigError(f"The {options.backend} backend runs saved bundles. Fix: save the model first.")
        engine = cls.__new__(cls)
        engine._setup(model, label_space, preprocessing, check_tta(tta), None, options)
        return engine

    def _setup(
        self,
        model: torch.nn.Module,
        label_space: LabelSpace,
        preprocessing: Preprocessing,
        tta: str,
        bundle: Bundle | None,
        options: InferenceOptions | None,
    ) -> None:
        self.bundle, self.model, self.label_space, self.preprocessing = bundle, model, label_space, preprocessing
        self.options = options or InferenceOptions()
        self.device = choose_device(self.options.device) if self.options.backend == "torch" else torch.device("cpu")
        if bundle is not None and self.options.backend == "onnx-int8":
            self.options = dataclasses.replace(self.options, onnx_path=str(_int8_model(bundle, self.options)))
        self.precision = self._resolve_precision()
        self.tta = tta  # applied to every batch, exactly as validated
        self._onnx: Any = None
        self._compiled: dict[str, Any] = {}
        if bundle is not None and self.options.backend != "torch":
            self._onnx = OnnxRunner.for_bundle(bundle, self.options.onnx_path)
            size = self._onnx.input_size
            if self.options.onnx_path is not None and size not in (None, preprocessing.image_size):
                raise ConfigError(
                    f"{self.options.onnx_path} takes {size} px images but the model is preprocessed to "
                    f"{preprocessing.image_size} px. Fix: export it again with cxr export."
                )
        else:
            model.to(self.device).eval()
            # oneDNN's and cuDNN's convolutions are fastest on NHWC; weights are converted once here.
            model.to(memory_format=torch.channels_last)
            if self.device.type == "cuda":
                torch.backends.cudnn.benchmark = True  # batches have a few fixed shapes

    def _resolve_precision(self) -> str:
        opt = self.options
        if opt.backend == "onnx-int8":
            return "int8"
        if opt.backend == "onnx" or opt.precision == "fp32":
            return "fp32"
        if opt.precision == "bf16":
            if not native_bf16(self.device):
                log.warning("bf16 requested but %s has no native bf16: it will be emulated (slow).", self.device)
            return "bf16"
        check = recorded_bf16_check(self.bundle) if self.bundle is not None else None
        if native_bf16(self.device) and check and check.get("ok"):
            return "bf16"
        return "fp32"

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.options.backend,
            "precision": self.precision,
            "device": str(self.device),
            "compile": bool(self.options.compile and not self._compiled.get("failed")),
            "decode": self.decoder,
            "tta": self.tta,
        }

    @property
    def decoder(self) -> str:
        """Where JPEG files of a table are decoded: "gpu" or "cpu"."""
        # "auto" means the CPU workers: on an H200 host they fed the model 5.1k img/s against nvJPEG's 2.4k
        # (224 px; a tie at 1024 px), because the GPU path does not overlap decode with the model yet.
        if self.options.backend != "torch" or self.device.type != "cuda" or self.options.decode != "gpu":
            return "cpu"
        if self.preprocessing.lungs or self.preprocessing.equalize:  # both run in ImageTransform, on the CPU path
            return "cpu"
        from cxrkit.models.gpu_decode import gpu_jpeg_available

        if gpu_jpeg_available(self.device.type):
            return "gpu"
        log.warning("decode='gpu' requested but nvJPEG is unavailable here; decoding on the CPU.")
        return "cpu"

    # -- batches -------------------------------------------------------------------------------

    def _bf16_for(self, n: int) -> bool:
        if self.precision != "bf16":
            return False
        if self.device.type != "cuda" or self.options.precision == "bf16" or self.options.compile:
            return True
        return n >= BF16_MIN_BATCH

    def _forward(self, x: torch.Tensor, bf16: bool) -> tuple[torch.Tensor, torch.Tensor]:
        model = self.model
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16):
            feats = embed(model, x)
            logits = output_layer(model)(feats)
        return logits.float(), feats.float()

    def _padded_size(self, n: int) -> int:
        """Fixed batch shapes for compiled graphs: 1, 2, 4, 8 (CUDA graphs), then the batch size."""
        if n <= SMALL_BATCH:
            return 1 << (n - 1).bit_length()
        return max(n, self.options.batch_size)

    def _compiled_forward(self, n: int) -> Any:
        small = self.device.type == "cuda" and n <= SMALL_BATCH
        key = "small" if small else "large"
        if key not in self._compiled:
            mode = "reduce-overhead" if small else None
            self._compiled[key] = torch.compile(self._forward, mode=mode, dynamic=False)
        return self._compiled[key]

    def _run_torch(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(x)
        x = x.to(self.device, dtype=torch.float32, non_blocking=True).contiguous(memory_format=torch.channels_last)
        bf16 = self._bf16_for(n)
        if not self.options.compile or self._compiled.get("failed"):
            with torch.inference_mode():
                return self._forward(x, bf16)
        with torch.no_grad():  # not inference_mode: compiled graphs/CUDA graphs are built for no_grad
            return self._run_compiled(x, n, bf16)

    def _run_compiled(self, x: torch.Tensor, n: int, bf16: bool) -> tuple[torch.Tensor, torch.Tensor]:
        size = self._padded_size(n)
        if size > n:
            x = torch.cat([x, x.new_zeros((size - n, *x.shape[1:]))]).contiguous(memory_format=torch.channels_last)
        try:
            logits, feats = self._compiled_forward(size)(x, bf16)
        except Exception as err:  # a backend (Triton, compiler) missing: stay correct, run eagerly
            log.warning("torch.compile failed (%s: %s); running eagerly.", type(err).__name__, str(err)[:300])
            self._compiled["failed"] = True
            return self._forward(x[:n], bf16)
        return logits[:n], feats[:n]

    def logits_and_embeddings(self, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Raw logits (N x outputs) and penultimate features (N x D) of a preprocessed batch.

        With the bundle's test-time augmentation both are the mean over the augmented views.
        """
        if self._onnx is not None:
            return tta_mean(self._onnx.run, x.float().cpu().numpy(), self.tta)

        def run(v: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
            logits, feats = self._run_torch(v)
            # One copy back to the host; CUDA-graph outputs are overwritten by the next replay, so copy now.
            return logits.cpu().numpy(), feats.cpu().numpy()

        return tta_mean(run, x, self.tta)

    def probabilities(self, x: torch.Tensor) -> np.ndarray:
        """Probabilities N x outputs (binary: N x 1, the positive class) of a preprocessed batch."""
        logits, _ = self.logits_and_embeddings(x)
        return self.to_proba(logits)

    def class_probabilities(self, x: torch.Tensor) -> np.ndarray:
        """Probabilities N x C, one column per class (binary: [negative, positive]) of a preprocessed batch."""
        return class_probabilities(self.probabilities(x), self.label_space)

    def embeddings(self, x: torch.Tensor) -> np.ndarray:
        """Penultimate features (N x D, not normalised) of a preprocessed batch."""
        return self.logits_and_embeddings(x)[1]

    def to_proba(self, logits: np.ndarray) -> np.ndarray:
        return logits_to_proba(torch.from_numpy(np.asarray(logits, np.float32)), self.label_space).numpy()

    def warmup(self) -> None:
        """Forward passes on blank batches: oneDNN/ORT build their kernels, and ``compile`` compiles (and
        records CUDA graphs), on these calls, not on a user's."""
        prep = self.preprocessing
        sizes = [1]
        if self.options.compile:  # both compiled graphs; CUDA graphs need a few calls to be recorded
            sizes = [1, 1, 1, self.options.batch_size, self.options.batch_size]
        for n in sizes:
            self.logits_and_embeddings(torch.zeros(n, prep.in_chans, prep.image_size, prep.image_size))

    # -- tables --------------------------------------------------------------------------------

    def loader(self, table: CxrTable, skip_errors: bool = False) -> DataLoader:
        prep, opt = self.preprocessing, self.options
        pin = self.device.type == "cuda" and opt.backend == "torch"
        return table_loader(table, prep, opt.batch_size, opt.num_workers, skip_errors, pin_memory=pin)

    def _batches(self, table: CxrTable, skipping: bool) -> Any:
        """``(x, errors or None)`` per batch of ``table``: decoded on the GPU by nvJPEG where ``decoder``
        is "gpu" (not when skipping unreadable images: that is the CPU workers' job)."""
        if self.decoder != "gpu" or skipping:
            # Workers always catch decode errors: the first one is raised here with its own message (a
            # worker's exception would reach us wrapped in a DataLoader traceback).
            for x, _, errors in self.loader(table, skip_errors=True):
                yield x, errors
            return
        from cxrkit.models.gpu_decode import bytes_loader, preprocess_on_device

        opt, prep = self.options, self.preprocessing
        workers = loader_workers(len(table), opt.batch_size, opt.num_workers)
        for items in bytes_loader(table, prep, opt.batch_size, workers):
            yield preprocess_on_device(items, prep, self.device), None

    def run_table(
        self,
        table: CxrTable,
        what: str = "proba",
        progress: bool = False,
        skipped: list[dict[str, Any]] | None = None,
        on_batch: Callable[[int], None] | None = None,
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """``what``: "proba" (N x outputs), "embedding" (N x D) or "both" (a tuple) for every image of ``table``.

        ``progress``: report progress (images): a bar on a terminal, else a log line every few seconds.
        ``skipped``: when a list, each unreadable image is appended as ``{"row", "path", "error"}``
        (logged as a warning) and its row is left out of the output; when None, the first one raises
        ``ImageDecodeError``. ``on_batch``: called with the number of images after each batch.
        """
        if what not in ("proba", "embedding", "both"):
            raise ValueError(f"what must be proba, embedding or both, not {what!r}")
        logits, feats = [], []
        bar = Progress(len(table), "inference", bar=sys.stderr.isatty(), logger=__name__) if progress else None
        row = 0
        try:
            for x, errors in self._batches(table, skipping=skipped is not None):
                lo, fe = self.logits_and_embeddings(x)
                if errors is not None and any(errors):
                    if skipped is None:
                        raise ImageDecodeError(next(e for e in errors if e))
                    ok = np.array([not e for e in errors], dtype=bool)
                    for i in np.flatnonzero(~ok):
                        log.warning("skipped %s", errors[i])
                        path = str(table.frame["path"].iat[row + int(i)])
                        skipped.append({"row": row + int(i), "path": path, "error": errors[i]})
                    lo, fe = lo[ok], fe[ok]
                row += len(x)
                if on_batch is not None:
                    on_batch(len(x))
                if bar is not None:
                    bar.update(len(x))
                logits.append(lo)
                feats.append(fe)
        finally:
            if bar is not None:
                bar.close()
        lo = np.concatenate(logits) if logits else np.zeros((0, self.label_space.num_outputs), np.float32)
        fe = np.concatenate(feats) if feats else np.zeros((0, 0), np.float32)
        proba = self.to_proba(lo)
        return {"proba": proba, "embedding": fe, "both": (proba, fe)}[what]


def _int8_model(bundle: Bundle, options: InferenceOptions) -> Path:
    """The bundle's INT8 model, only where its accuracy check passed (else a ConfigError saying why)."""
    check = (bundle.extra.get("precision_check") or {}).get("int8") or {}
    name = bundle.path.name if bundle.path else "MODEL"
    if not check:
        raise ConfigError(
            f"{name} has no INT8 check yet. Fix: run `cxr threshold --model {bundle.path}` (it calibrates on the "
            "validation split, checks the accuracy and writes model.int8.onnx), or use --backend onnx."
        )
    if not check.get("ok"):
        why = check.get("skipped") or (
            f"validation AUROC moved by {check.get('auroc_delta')} (tolerance {check.get('tolerance')}), "
            f"same decisions on {check.get('decision_agreement')} of images (minimum {check.get('agreement_min')})"
        )
        raise ConfigError(f"INT8 is refused for {name}: {why}. Fix: use --backend onnx (fp32).")
    path = Path(options.onnx_path) if options.onnx_path else Path(bundle.path) / INT8_FILE
    if not path.is_file():
        raise ConfigError(f"{path} is missing. Fix: run `cxr threshold --model {bundle.path}` to write it again.")
    return path
