"""Image embeddings for similarity search: penultimate features, L2-normalised (cosine = inner product).

Large archives are embedded in chunks written to a work folder, so that an interrupted run resumes
where it stopped: ``embed_table(..., work_dir=<out>.partial)`` skips every chunk already on disk.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import torch

from cxrkit.core.files import atomic_path, atomic_write_text
from cxrkit.core.progress import Progress
from cxrkit.data.images import load_image
from cxrkit.data.table import CxrTable
from cxrkit.data.transforms import ImageTransform
from cxrkit.models.bundle import Bundle
from cxrkit.models.engine import Engine, InferenceOptions

log = logging.getLogger(__name__)

CHUNK_PREFIX = "chunk_"
WORK_MANIFEST = "work.json"
DEFAULT_CHUNK_SIZE = 1024


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32); all-zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.maximum(norms, 1e-12), dtype=np.float32)


def _index_engine(bundle: Bundle, batch_size: int = 32, num_workers: int | None = None, device: str | None = None):
    # Stored embeddings are computed in fp32: an index outlives the machine that built it, and fp32 makes a
    # rebuild, an `add` and a sharded build agree to 1e-5 wherever they run. Queries may use bf16.
    return Engine(
        bundle, InferenceOptions(precision="fp32", batch_size=batch_size, num_workers=num_workers, device=device)
    )


def embed_batch(bundle: Bundle, x: torch.Tensor) -> np.ndarray:
    """Normalised embeddings (N, D) of an already preprocessed batch."""
    return l2_normalise(_index_engine(bundle).embeddings(x))


def embed_paths(bundle: Bundle, paths: list[str | Path]) -> np.ndarray:
    """Normalised embeddings (N, D) of image files (decoded and preprocessed as the bundle was trained)."""
    transform = ImageTransform(bundle.preprocessing)
    x = torch.stack([transform(load_image(str(p))) for p in paths])
    return embed_batch(bundle, x)


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
    batch_size: int = 32,
    num_workers: int | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    work_dir: str | Path | None = None,
    progress: bool = False,
    device: str | None = None,
) -> np.ndarray:
    """Normalised embeddings (N, D) of every image of ``table``, computed chunk by chunk.

    Args:
        bundle: the model (its penultimate layer, see ``cxrkit.models.embed``).
        table: images to embed.
        batch_size: images per forward pass.
        num_workers: DataLoader decode workers.
        chunk_size: images per chunk file in ``work_dir``.
        work_dir: where finished chunks are kept (``chunk_00012.npy``); chunks already there from an
            interrupted run with the same model and images are reused. None keeps nothing on disk.
        progress: show a progress bar (images).
        device: torch device (default: CUDA when present).
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
    engine = _index_engine(bundle, batch_size, num_workers, device)
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
