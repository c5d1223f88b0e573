"""JPEG files decoded on the GPU (nvJPEG through torchvision) for the engine's file path.

DataLoader workers only read the files' bytes (cheap); the main process decodes a whole batch of
JPEGs with one ``torchvision.io.decode_jpeg(list, device="cuda")`` call, then resizes and normalises
the batch on the GPU with the same ``resize`` as the CPU path. Why torchvision's decoder, not nvImageCodec
or DALI: it ships with the torchvision already installed (no extra CUDA wheel to match), decodes a
list in one batched nvJPEG call, and ``benchmarks/gpu.py`` measures it against CPU decoding workers.

Rows that are not JPEG files (PNG, DICOM, MedMNIST arrays) are decoded and preprocessed in the
workers as before, and a JPEG nvJPEG refuses (12-bit, CMYK...) falls back to the CPU decoder.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from cxrkit.core.preprocess import Preprocessing
from cxrkit.data.images import NPZ_REF, load_image
from cxrkit.data.table import CxrTable
from cxrkit.data.transforms import ImageTransform, resize

log = logging.getLogger(__name__)

JPEG_MAGIC = b"\xff\xd8\xff"
_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, as PIL's convert("L") on the CPU path


@functools.cache
def gpu_jpeg_available(device_type: str = "cuda") -> bool:
    """True when torchvision can decode JPEGs on this CUDA device (checked once on a tiny image)."""
    if device_type != "cuda" or not torch.cuda.is_available():
        return False
    try:
        from torchvision.io import decode_jpeg, encode_jpeg

        probe = encode_jpeg(torch.zeros(1, 8, 8, dtype=torch.uint8))
        decode_jpeg([probe], device="cuda")
        return True
    except Exception as err:  # no nvJPEG in this build, driver too old...
        log.info("GPU JPEG decoding unavailable (%s); decoding on the CPU.", err)
        return False


class BytesOrTensorDataset(Dataset):
    """Item i: ``(path, jpeg bytes as a uint8 tensor, None, label)`` for JPEG files, else
    ``(path, None, preprocessed tensor, label)`` decoded on the CPU in the worker."""

    def __init__(self, table: CxrTable, prep: Preprocessing) -> None:
        self.paths = table.frame["path"].astype(str).to_list()
        self.labels = torch.from_numpy(table.labels.copy())
        self.transform = ImageTransform(prep)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[str, torch.Tensor | None, torch.Tensor | None, torch.Tensor]:
        path = self.paths[i]
        if NPZ_REF.match(path) is None:
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except OSError:
                data = b""  # load_image below raises the clear error
            if data.startswith(JPEG_MAGIC):
                return path, torch.frombuffer(bytearray(data), dtype=torch.uint8), None, self.labels[i]
        return path, None, self.transform(load_image(path)), self.labels[i]


def _as_list(batch: list) -> list:
    return batch


def bytes_loader(table: CxrTable, prep: Preprocessing, batch_size: int, num_workers: int) -> DataLoader:
    """Batches (lists of ``BytesOrTensorDataset`` items) of ``table`` in order."""
    return DataLoader(
        BytesOrTensorDataset(table, prep),
        batch_size=batch_size,
        num_workers=num_workers,
        shuffle=False,
        collate_fn=_as_list,
    )


def _to_gray01(img: torch.Tensor) -> torch.Tensor:
    """A decoded uint8 (C, H, W) image as float (1, H, W) in [0, 1]."""
    x = img.float().div_(255.0)
    if x.shape[0] == 3:
        w = torch.tensor(_LUMA, device=x.device, dtype=x.dtype).view(3, 1, 1)
        x = (x * w).sum(0, keepdim=True)
    return x[:1]


def _decode(datas: list[torch.Tensor], paths: list[str], device: torch.device) -> list[torch.Tensor]:
    from torchvision.io import ImageReadMode, decode_jpeg

    try:
        return list(decode_jpeg(datas, mode=ImageReadMode.GRAY, device=device))
    except RuntimeError as err:  # one bad/unsupported JPEG fails the whole batch: decode one by one
        log.debug("batched nvJPEG decode failed (%s); decoding one by one", err)
    out = []
    for data, path in zip(datas, paths, strict=True):
        try:
            out.append(decode_jpeg(data, mode=ImageReadMode.GRAY, device=device))
        except RuntimeError:
            out.append(torch.from_numpy(load_image(path))[None].mul(255.0).to(device))
    return out


def preprocess_on_device(items: list, prep: Preprocessing, device: torch.device) -> torch.Tensor:
    """One (N, in_chans, S, S) float batch on ``device`` from a ``bytes_loader`` batch, in row order."""
    out: list[Any] = [None] * len(items)
    jpeg = [i for i, it in enumerate(items) if it[1] is not None]
    for i, it in enumerate(items):
        if it[1] is None:
            out[i] = it[2].to(device, non_blocking=True)
    if jpeg:
        decoded = _decode([items[i][1] for i in jpeg], [items[i][0] for i in jpeg], device)
        groups: dict[tuple[int, ...], list[int]] = {}
        for k, img in enumerate(decoded):
            groups.setdefault(tuple(img.shape[-2:]), []).append(k)
        for members in groups.values():  # one resize call per image size
            x = torch.stack([_to_gray01(decoded[k]) for k in members])
            size = (prep.image_size, prep.image_size)
            if x.shape[-2:] != size and prep.resize == "squash":  # the CPU path's resize, batched
                x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
            elif x.shape[-2:] != size:
                x = torch.stack([resize(img, prep.image_size, prep.resize) for img in x])
            x = (x - prep.mean) / prep.std
            if prep.in_chans == 3:
                x = x.expand(-1, 3, -1, -1)
            for k, row in zip(members, x, strict=True):
                out[jpeg[k]] = row
    return torch.stack(out)
