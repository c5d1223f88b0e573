"""Embedding an archive across processes and machines with Lightning's predict loop.

Every rank embeds its share of the table (Lightning puts a distributed sampler under the DataLoader)
and writes one shard file, ``<work>/shards/rank_00003.npz``: the table row numbers it embedded and
their normalised embeddings. After the run, one process merges the shards back into table order;
a row seen twice (a sampler that pads the last round so that every rank gets as many rows) is kept
once. The merged vectors equal a single-process ``embed_table`` of the same table.

Lightning is imported here only, and ``build_index`` imports this module only for a multi-process
build: loading and querying an index need no training stack. (The import-linter contracts forbid
Lightning in core/io/data/models/evaluation, and ``training`` in ``search``; Lightning itself is allowed.)
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader, Dataset

from cxrkit.core.errors import ConfigError
from cxrkit.core.files import atomic_path
from cxrkit.core.precision import lightning_precision
from cxrkit.data.images import load_image
from cxrkit.data.table import CxrTable
from cxrkit.data.transforms import ImageTransform
from cxrkit.models.bundle import Bundle
from cxrkit.models.engine import Engine, InferenceOptions, default_workers
from cxrkit.search.embeddings import index_engine, index_options, l2_normalise, paths_digest
from cxrkit.search.errors import IndexFormatError

log = logging.getLogger(__name__)

SHARD_DIR = "shards"
STRATEGIES = ("ddp", "ddp_spawn")


def shard_path(folder: Path, rank: int) -> Path:
    return folder / f"rank_{rank:05d}.npz"


class RowImages(Dataset):
    """(preprocessed image, table row): the row travels with its image, so no sampler bookkeeping is needed."""

    def __init__(self, table: CxrTable, transform: ImageTransform):
        self.paths = table.frame["path"].astype(str).to_list()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(load_image(self.paths[i])), i


class EmbeddingModule(L.LightningModule):
    """A bundle whose ``predict_step`` returns the ``Engine``'s penultimate-layer embeddings (as ``embed_table``)."""

    def __init__(self, bundle: Bundle, inference: InferenceOptions):
        super().__init__()
        self.model = bundle.model  # a submodule: Lightning moves it to this rank's device
        self.bundle, self.inference = bundle, inference
        self.engine: Engine | None = None

    def on_predict_start(self) -> None:
        # Made on the rank's own device, after any spawn: every rank runs what a single-process build runs.
        self.engine = index_engine(self.bundle, dataclasses.replace(self.inference, device=str(self.device)))

    def predict_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        x, rows = batch
        assert self.engine is not None  # on_predict_start ran
        return {"rows": rows, "vectors": torch.from_numpy(self.engine.embeddings(x))}


class ShardWriter(BasePredictionWriter):
    """Collects this rank's rows and embeddings batch by batch; at the end writes one shard file (atomically).

    ``key`` (model fingerprint, paths digest, row count, world size) is stored in the shard, so a
    shard left by another build is recognised and refused at merge time. The interval is "batch":
    with an "epoch" interval Lightning would also keep every raw prediction until the end.
    """

    def __init__(self, folder: Path, key: dict[str, Any]):
        super().__init__("batch")
        self.folder, self.key = Path(folder), key
        self._rows: list[np.ndarray] = []
        self._vectors: list[np.ndarray] = []

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0):
        self._rows.append(prediction["rows"].cpu().numpy().astype(np.int64))
        self._vectors.append(l2_normalise(prediction["vectors"].float().cpu().numpy()))

    def on_predict_epoch_end(self, trainer, pl_module) -> None:
        rows = np.concatenate(self._rows) if self._rows else np.zeros(0, np.int64)
        vectors = np.concatenate(self._vectors) if self._vectors else np.zeros((0, 0), np.float32)
        self._rows.clear()
        self._vectors.clear()
        key = {**self.key, "rank": trainer.global_rank}
        with atomic_path(shard_path(self.folder, trainer.global_rank)) as tmp, open(tmp, "wb") as f:
            np.savez(f, rows=rows, vectors=vectors, key=np.array(json.dumps(key)))
        # Under ddp/torchrun/SLURM rank 0 merges right after predict(): wait until every shard is written.
        trainer.strategy.barrier("cxrkit-shards-written")


def merge_shards(folder: str | Path, key: dict[str, Any], world_size: int) -> np.ndarray:
    """The (N, D) embeddings in table order, from the shards of ranks ``0 .. world_size-1``.

    Each shard's vectors are written straight into their table rows, one shard in memory at a time,
    so the merge holds N x D floats once. A row found in several shards (a sampler that pads the last
    round repeats rows) is the same image with the same embedding; it is kept once.

    Raises:
        IndexFormatError: a shard is missing, belongs to another build, or rows are missing.
    """
    folder = Path(folder)
    n = int(key["n"])
    merged: np.ndarray | None = None
    seen = np.zeros(n, dtype=bool)
    repeated = 0
    for rank in range(world_size):
        path = shard_path(folder, rank)
        if not path.is_file():
            raise IndexFormatError(
                f"Shard {path} of rank {rank} is missing. On several nodes the index folder (--out) must be on "
                "a filesystem every node can write and rank 0 can read; rerun the build."
            )
        with np.load(path, allow_pickle=False) as shard:
            theirs = json.loads(str(shard["key"]))
            rows, vectors = shard["rows"].astype(np.int64), shard["vectors"]
        if {k: theirs.get(k) for k in key} != key:
            raise IndexFormatError(
                f"Shard {path} belongs to another build ({theirs}, expected {key}); rerun the build."
            )
        if not len(rows):
            continue
        if merged is None:
            merged = np.empty((n, vectors.shape[1]), dtype=np.float32)
        if rows.min() < 0 or rows.max() >= n or vectors.shape != (len(rows), merged.shape[1]):
            raise IndexFormatError(
                f"Shard {path} is inconsistent: rows {rows.min()}..{rows.max()} for {n} images, "
                f"vectors {vectors.shape} (dim {merged.shape[1]} expected); rerun the build."
            )
        repeated += int(seen[rows].sum())
        merged[rows] = vectors
        seen[rows] = True
    if merged is None or not seen.all():
        missing = np.flatnonzero(~seen)
        raise IndexFormatError(
            f"The shards in {folder} cover {int(seen.sum())} of {n} rows (missing e.g. {missing[:5].tolist()}); "
            "rerun the build."
        )
    if repeated:
        log.info("Kept %d repeated (padding) row(s) once while merging %d shards.", repeated, world_size)
    return merged


def embed_table_sharded(
    bundle: Bundle,
    table: CxrTable,
    work_dir: str | Path,
    devices: int,
    num_nodes: int = 1,
    strategy: str = "ddp",
    accelerator: str = "auto",
    inference: InferenceOptions | None = None,
    progress: bool = False,
) -> np.ndarray | None:
    """Normalised embeddings (N, D) of ``table``, computed by ``devices * num_nodes`` Lightning ranks.

    Args:
        bundle: the model.
        table: images to embed.
        work_dir: where ``shards/`` is written; on several nodes a filesystem all of them share.
        devices: processes (GPUs) per node.
        num_nodes: machines; under SLURM or torchrun Lightning reads ranks from the environment.
        strategy: ``ddp`` (Lightning re-runs the command once per extra local rank; the only choice
            under torchrun/SLURM) or ``ddp_spawn`` (ranks are spawned from this process).
        accelerator: ``auto``, ``cpu``, ``gpu``...
        inference: backend, batch size (per forward pass per rank) and decode workers per rank (None:
            ``default_workers()``); fp32 (``index_options``), on each rank's own device.
        progress: show Lightning's progress bar.

    Returns:
        The merged embeddings on the process that merges (the launching process under ``ddp_spawn``,
        global rank 0 otherwise); None on every other rank.
    """
    if strategy not in STRATEGIES:
        raise ConfigError(f"A sharded build runs with strategy ddp or ddp_spawn, got {strategy!r}.")
    if int(devices) < 1 or int(num_nodes) < 1:
        raise ConfigError(f"devices and num_nodes must be at least 1, got {devices} and {num_nodes}.")
    world_size = int(devices) * int(num_nodes)
    if len(table) < world_size:
        # A rank without rows skips Lightning's predict epoch, writes no shard and never reaches the barrier.
        raise ConfigError(f"{len(table)} images cannot be shared by {world_size} ranks; use fewer devices or nodes.")
    folder = Path(work_dir) / SHARD_DIR
    folder.mkdir(parents=True, exist_ok=True)
    key = {
        "fingerprint": bundle.fingerprint,
        "paths_sha256": paths_digest(table),
        "n": len(table),
        "world_size": world_size,
    }
    inference = index_options(inference)
    workers = default_workers() if inference.num_workers is None else inference.num_workers
    loader = DataLoader(
        RowImages(table, ImageTransform(bundle.preprocessing)),
        batch_size=inference.batch_size,
        num_workers=workers,
        shuffle=False,  # Lightning shards it without padding for predict (UnrepeatedDistributedSampler)
    )
    trainer = L.Trainer(
        accelerator=accelerator,
        devices=int(devices),
        num_nodes=int(num_nodes),
        strategy=strategy,
        precision=lightning_precision("fp32"),
        callbacks=[ShardWriter(folder, key)],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=progress,
        enable_model_summary=False,
        default_root_dir=str(work_dir),
    )
    trainer.predict(EmbeddingModule(bundle, inference), dataloaders=loader, return_predictions=False)
    if not trainer.is_global_zero:
        return None
    return merge_shards(folder, key, trainer.world_size)
