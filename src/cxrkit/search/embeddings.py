"""Image embeddings for similarity search: penultimate features, L2-normalised (cosine = inner product).

Large archives are embedded in chunks written to a work folder, so that an interrupted run resumes
where it stopped: ``embed_table(..., work_dir=<out>.partial)`` skips every chunk already on disk.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cxrkit.core.errors import ConfigError
from cxrkit.core.files import atomic_path, atomic_write_text
from cxrkit.core.progress import Progress
from cxrkit.data.table import CxrTable
from cxrkit.models.bundle import Bundle
from cxrkit.models.engine import Engine, InferenceOptions, paths_table

log = logging.getLogger(__name__)

CHUNK_PREFIX = "chunk_"
WORK_MANIFEST = "work.json"
DEFAULT_CHUNK_SIZE = 1024


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32); all-zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.maximum(norms, 1e-12), dtype=np.float32)


def index_options(options: InferenceOptions | None = None) -> InferenceOptions:
    """``options`` as used for embeddings that are stored or searched against stored ones: always fp32.

    An index outlives the machine that built it, and fp32 makes a rebuild, an ``add``, a query and a
    sharded build agree to 1e-5 wherever they run: ``precision`` is set to fp32, the backend (torch or
    ONNX, both fp32) is kept, and INT8 is refused.
    """
    options = options or InferenceOptions()
    if options.backend == "onnx-int8":
        raise ConfigError(
            "An index stores fp32 embeddings; INT8 would not match them. Fix: use --backend torch or onnx."
        )
    return dataclasses.replace(options, precision="fp32")


def index_engine(bundle: Bundle, options: InferenceOptions | None = None) -> Engine:
    """The engine that computes a bundle's index embeddings (see ``index_options``)."""
    return Engine(bundle, index_options(options))


def embed_paths(bundle: Bundle, paths: Sequence[str | Path], inference: InferenceOptions | None = None) -> np.ndarray:
    """Normalised embeddings (N, D) of image files, decoded in the engine's DataLoader workers.

    Raises:
        ImageDecodeError: an unreadable file (named).
    """
    engine = index_engine(bundle, inference)
    return l2_normalise(engine.run_table(paths_table(paths, bundle.label_space), "embedding"))


def paths_digest(table: CxrTable) -> str:
    """sha256 of the table's image paths in row order: which images, and in which order, a build embeds."""
    return hashlib.sha256("\n".join(table.frame["path"].astype(str)).encode()).hexdigest()


def _work_key(bundle: Bundle, table: CxrTable, chunk_size: int) -> dict:
    return {
        "fingerprint": bundle.fingerprint,
        "paths_sha256": paths_digest(table),
        "n": len(table),
        "chunk_size": chunk_size,
    }


def _prepare_work_dir(work_dir: Path, key: dict) -> None:
    manifest = work_dir / WORK_MANIFEST
    if work_dir.is_dir():
        try:
            old = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            old = None
        if old == key:
            return
        log.info("Work folder %s belongs to another build (model or images differ); starting afresh.", work_dir)
        shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True)
    atomic_write_text(manifest, json.dumps(key, indent=2))


def _load_chunk(path: Path, rows: int) -> np.ndarray | None:
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    return arr if arr.ndim == 2 and arr.shape[0] == rows else None


def embed_table(
    bundle: Bundle,
    table: CxrTable,
    inference: InferenceOptions | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    work_dir: str | Path | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Normalised embeddings (N, D) of every image of ``table``, computed chunk by chunk.

    Args:
        bundle: the model (its penultimate layer, see ``cxrkit.models.embed``).
        table: images to embed.
        inference: backend, device, batch size and decode workers (precision is fp32: ``index_options``).
        chunk_size: images per chunk file in ``work_dir``.
        work_dir: where finished chunks are kept (``chunk_00012.npy``); chunks already there from an
            interrupted run with the same model and images are reused. None keeps nothing on disk.
        progress: show a progress bar (images).
    """
    n = len(table)
    chunk_size = max(1, int(chunk_size))
    starts = list(range(0, n, chunk_size))
    work = Path(work_dir) if work_dir is not None else None
    if work is not None:
        _prepare_work_dir(work, _work_key(bundle, table, chunk_size))
    # A bar on a terminal, else a log line every few seconds: a large build must never look hung.
    bar = Progress(n, "embedding", bar=progress, logger=__name__)
    parts: list[np.ndarray] = []
    computed = 0
    engine = index_engine(bundle, inference)
    try:
        for i, start in enumerate(starts):
            stop = min(start + chunk_size, n)
            chunk_file = work / f"{CHUNK_PREFIX}{i:05d}.npy" if work is not None else None
            arr = _load_chunk(chunk_file, stop - start) if chunk_file is not None and chunk_file.is_file() else None
            if arr is None:
                sub = table.subset(np.arange(start, stop))
                arr = l2_normalise(engine.run_table(sub, "embedding", on_batch=bar.update))
                computed += 1
                if chunk_file is not None:
                    with atomic_path(chunk_file) as tmp, open(tmp, "wb") as f:
                        np.save(f, arr, allow_pickle=False)
            else:
                bar.update(stop - start)  # a chunk reused from an interrupted run
            parts.append(arr)
    finally:
        bar.close()
    if work is not None and computed < len(starts):
        log.info("Resumed: %d of %d chunks reused from %s.", len(starts) - computed, len(starts), work)
    if not parts:
        return np.zeros((0, 0), np.float32)
    return np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)
