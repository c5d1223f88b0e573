"""A torch Dataset over a CxrTable: (image tensor, label vector with NaN for unknown)."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from cxrkit.core.errors import CxrkitError
from cxrkit.data.images import load_image
from cxrkit.data.table import CxrTable
from cxrkit.data.transforms import ImageTransform


class CxrImageDataset(Dataset):
    """Decodes lazily, so workers share nothing but paths; labels stay float with NaN (masked in the loss)."""

    def __init__(self, table: CxrTable, transform: ImageTransform, skip_errors: bool = False):
        """``skip_errors``: items are ``(image, labels, error)``; an unreadable image gives a blank
        tensor and its error message (else ``""``), so one bad file does not end a whole run."""
        self.paths = table.frame["path"].astype(str).to_list()
        self.labels = torch.from_numpy(table.labels.copy())
        self.transform = transform
        self.skip_errors = skip_errors

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        if not self.skip_errors:
            return self.transform(load_image(self.paths[i]), path=self.paths[i]), self.labels[i]
        try:
            return self.transform(load_image(self.paths[i]), path=self.paths[i]), self.labels[i], ""
        except (CxrkitError, OSError) as e:
            prep = self.transform.prep
            blank = torch.zeros(prep.in_chans, prep.image_size, prep.image_size)
            return blank, self.labels[i], str(e) if isinstance(e, CxrkitError) else f"{self.paths[i]}: {e}"
