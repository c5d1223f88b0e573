"""LightningDataModule over the train/val splits of a CxrTable."""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, WeightedRandomSampler

from cxrkit.core.preprocess import Preprocessing
from cxrkit.data.table import CxrTable
from cxrkit.data.torch_dataset import CxrImageDataset
from cxrkit.data.transforms import Augmentation, ImageTransform


def balanced_sample_weights(table: CxrTable) -> np.ndarray:
    """Per-row weights so that every class is drawn equally often (exclusive tasks)."""
    idx = table.class_index()
    counts = np.bincount(idx[idx >= 0], minlength=len(table.classes)).astype(np.float64)
    w = np.where(idx >= 0, 1.0 / np.maximum(counts[np.clip(idx, 0, None)], 1.0), 0.0)
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
    ):
        super().__init__()
        self.train_table, self.val_table = train, val
        self.prep, self.augmentation = prep, augmentation
        self.batch_size, self.num_workers = batch_size, num_workers
        self.balanced_sampler, self.seed = balanced_sampler, seed

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
        sampler = None
        if self.balanced_sampler:
            w = torch.as_tensor(balanced_sample_weights(self.train_table))
            g = torch.Generator().manual_seed(self.seed)
            sampler = WeightedRandomSampler(w, num_samples=len(ds), replacement=True, generator=g)
        return self._loader(ds, shuffle=True, sampler=sampler)

    def val_dataloader(self) -> DataLoader:
        return self._loader(CxrImageDataset(self.val_table, ImageTransform(self.prep)), shuffle=False)
