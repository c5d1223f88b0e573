"""LightningDataModule over the train/val splits of a CxrTable."""

from __future__ import annotations

import lightning as L
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, WeightedRandomSampler

from cxrkit.core.preprocess import Preprocessing
from cxrkit.data.shard_order import ChunkOrderedSampler, shard_chunks
from cxrkit.data.table import CxrTable
from cxrkit.data.torch_dataset import CxrImageDataset
from cxrkit.data.transforms import Augmentation, ImageTransform


def balanced_sample_weights(table: CxrTable) -> np.ndarray:
    """Per-row weights so that every class is drawn equally often (exclusive tasks)."""
    idx = table.class_index()
    counts = np.bincount(idx[idx >= 0], minlength=len(table.classes)).astype(np.float64)
    w = np.where(idx >= 0, 1.0 / np.maximum(counts[np.clip(idx, 0, None)], 1.0), 0.0)
    return w / w.sum()


def source_balanced_weights(table: CxrTable, column: str = "source") -> np.ndarray:
    """Per-row weights so that every source is drawn equally often, and within a source every class it has.

    A model then cannot lower its loss by learning which source supplies which class more often: each
    (source, class) cell of an exclusive task, or each source of a multi-label one, gets an equal share.
    Unlabelled rows of an exclusive task are never drawn.
    """
    sources = table.frame[column].astype("string").fillna("(no source)").to_numpy(dtype=object)
    exclusive = table.label_space.exclusive
    cls = table.class_index() if exclusive else np.zeros(len(table), dtype=int)
    cells = pd.Series([f"{s}\x00{c}" for s, c in zip(sources, cls, strict=True)])
    per_cell = cells.map(cells.value_counts()).to_numpy(dtype=np.float64)
    cells_in_source = pd.Series(sources).map(
        pd.DataFrame({"s": sources, "c": cls})[cls >= 0].groupby("s")["c"].nunique()
    )
    w = 1.0 / (per_cell * cells_in_source.fillna(1).to_numpy(dtype=np.float64))
    w[cls < 0] = 0.0
    return w / w.sum()


class CxrDataModule(L.LightningDataModule):
    def __init__(
        self,
        train: CxrTable,
        val: CxrTable,
        prep: Preprocessing,
        augmentation: Augmentation | None,
        batch_size: int = 32,
        num_workers: int = 2,
        balanced_sampler: bool = False,
        seed: int = 0,
        source_column: str | None = None,
    ):
        super().__init__()
        self.train_table, self.val_table = train, val
        self.prep, self.augmentation = prep, augmentation
        self.batch_size, self.num_workers = batch_size, num_workers
        self.balanced_sampler, self.seed = balanced_sampler, seed
        self.source_column = source_column  # set: sample every source (and class within it) equally

    def _loader(self, ds: CxrImageDataset, shuffle: bool, sampler=None) -> DataLoader:
        return DataLoader(
            ds,
            batch_size=self.batch_size,
            shuffle=shuffle and sampler is None,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            drop_last=False,
        )

    def train_dataloader(self) -> DataLoader:
        ds = CxrImageDataset(self.train_table, ImageTransform(self.prep, self.augmentation))
        w = None
        if self.balanced_sampler or self.source_column:
            w = (
                source_balanced_weights(self.train_table, self.source_column)
                if self.source_column
                else balanced_sample_weights(self.train_table)
            )
        chunks = shard_chunks(ds.paths)
        if chunks is not None:  # rows of a dataset cache: read its chunks in order (data/shard_order.py)
            return self._loader(ds, shuffle=True, sampler=ChunkOrderedSampler(chunks, w, seed=self.seed))
        sampler = None
        if w is not None:
            g = torch.Generator().manual_seed(self.seed)
            sampler = WeightedRandomSampler(torch.as_tensor(w), num_samples=len(ds), replacement=True, generator=g)
        return self._loader(ds, shuffle=True, sampler=sampler)

    def val_dataloader(self) -> DataLoader:
        return self._loader(CxrImageDataset(self.val_table, ImageTransform(self.prep)), shuffle=False)
