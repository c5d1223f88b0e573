"""Load the image behind a table row: a file on disk, or an array inside a MedMNIST .npz."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import numpy as np

from cxrkit.core.errors import DataFormatError, ImageDecodeError
from cxrkit.data.shards import load_cached_image
from cxrkit.io import image_size, read_image

# A row of an array file is addressed as '/abs/file.npz::train_images[12]'.
NPZ_REF = re.compile(r"^(?P<file>.+\.npz)::(?P<key>\w+)\[(?P<index>\d+)\]$")


def npz_ref(file: str | Path, key: str, index: int) -> str:
    return f"{file}::{key}[{index}]"


@functools.lru_cache(maxsize=4)
def _npz_arrays(file: str) -> dict[str, np.ndarray]:
    with np.load(file, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def load_image(path: str) -> np.ndarray:
    """Decode the image a table row points at to float32 (H, W) in [0, 1]."""
    if "::shard[" in str(path):  # a row of a dataset cache (cxr data cache)
        return load_cached_image(str(path))
    m = NPZ_REF.match(str(path))
    if m is None:
        return read_image(path)
    arrays = _npz_arrays(m["file"])
    key, index = m["key"], int(m["index"])
    if key not in arrays or index >= len(arrays[key]):
        raise DataFormatError(f"{path}: no such array row in {m['file']} (keys: {sorted(arrays)}).")
    img = arrays[key][index]
    if img.ndim == 3:  # MedMNIST colour sets are H x W x 3
        img = img.mean(axis=-1)
    if img.dtype == np.uint8:
        return (img.astype(np.float32) / 255.0).copy()
    if img.dtype == np.uint16:
        return (img.astype(np.float32) / 65535.0).copy()
    raise ImageDecodeError(f"{path}: unsupported array dtype {img.dtype}; expected uint8 or uint16.")


def load_size(path: str) -> tuple[int, int]:
    """(width, height) of the image a row points at, from its header where possible."""
    if "::shard[" in str(path):
        h, w = load_image(path).shape
        return int(w), int(h)
    m = NPZ_REF.match(str(path))
    if m is None:
        return image_size(path)
    arr = _npz_arrays(m["file"])[m["key"]]
    return int(arr.shape[2]), int(arr.shape[1])
