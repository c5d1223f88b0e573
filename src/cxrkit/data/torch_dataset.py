"""A torch Dataset over a CxrTable: (image tensor, label vector with NaN for unknown)."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from cxrkit.data.images import load_image
from cxrkit.data.table import CxrTable
from cxrkit.data.transforms import ImageTransform


class CxrImageDataset(Dataset):
    """Decodes lazily, so workers share nothing but paths; labels stay float with NaN (masked in the loss)."""

    def __init__(self, table: CxrTable, transform: ImageTransform):
        self.paths = table.frame["path"].astype(str).to_list()
        self.labels = torch.from_numpy(table.labels.copy())
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(load_image(self.paths[i])), self.labels[i]
