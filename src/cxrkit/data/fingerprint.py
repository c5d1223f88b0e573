"""Image identities: an exact content hash (split records) and a perceptual hash (seen-image checks).

Two hashes, because they answer different questions:

- ``content_hash``: the first 8 bytes of the sha256 of the file's bytes (of the array row for MedMNIST).
  Exact and cheap (no decoding): a bundle's recorded train/val split is rebuilt from it, whatever folder the
  data sits in on another machine.
- ``pixel_dhash``: a 256-bit difference hash of the decoded image (16 x 17 area-resized grey levels, one bit
  per horizontal gradient sign). It survives re-encoding, resizing and aspect changes: every image of
  ``kaggle-pneumonia-fullres-sample`` (same X-rays at their real aspect ratio) lies within 6 bits of its copy
  in ``kaggle-pneumonia/train`` (224 px, squashed), while distinct Kaggle images are >= 12 bits apart (apart
  from true duplicates at 0) and NIH images >= 21 bits from any Kaggle image. ``NEAR_DUPLICATE_BITS`` = 8.
  An exact byte hash would have missed all 200 of those copies.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from cxrkit.data.images import NPZ_REF, _npz_arrays, load_image
from cxrkit.data.shards import CACHE_REF, MARKER, cached_array
from cxrkit.data.table import CxrTable

CONTENT_BYTES = 8  # 16 hex digits: collisions need ~4e9 images
DHASH_SIDE = 16  # 16 x 16 = 256 bits = 32 bytes per image
NEAR_DUPLICATE_BITS = 8
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def content_hash(path: str) -> bytes:
    """First ``CONTENT_BYTES`` of the sha256 of the image file (or of the MedMNIST array row, or of the
    uint8 image a dataset cache stores)."""
    m = NPZ_REF.match(str(path))
    h = hashlib.sha256()
    if m:
        h.update(np.ascontiguousarray(_npz_arrays(m["file"])[m["key"]][int(m["index"])]).tobytes())
    elif CACHE_REF.match(str(path)):
        h.update(np.ascontiguousarray(cached_array(str(path))).tobytes())
    else:
        with open(path, "rb") as f:
            h = hashlib.file_digest(f, "sha256")
    return h.digest()[:CONTENT_BYTES]


def pixel_dhash(image: np.ndarray) -> np.ndarray:
    """256-bit difference hash (32 uint8) of a decoded float image."""
    import cv2  # lazy: loading a bundle (which imports this module) needs no OpenCV

    small = cv2.resize(np.asarray(image, np.float32), (DHASH_SIDE + 1, DHASH_SIDE), interpolation=cv2.INTER_AREA)
    return np.packbits(small[:, 1:] > small[:, :-1])


def _map(fn, paths: Sequence[str], workers: int) -> list:
    if workers <= 1 or len(paths) < 64:
        return [fn(p) for p in paths]
    with ThreadPoolExecutor(workers) as pool:  # decoding and hashing release the GIL
        return list(pool.map(fn, paths, chunksize=32))


def _file_version(path: str) -> tuple[str, int, int] | None:
    """(path, mtime, size) of the file behind ``path`` (a MedMNIST row: its .npz; a cache row: the cache's
    marker), or None if it cannot be read."""
    m, c = NPZ_REF.match(path), CACHE_REF.match(path)
    try:  # a cache row: its cache's marker file, rewritten whenever the cache is
        st = os.stat(m["file"] if m else os.path.join(c["root"], MARKER) if c else path)
    except OSError:
        return None
    return path, st.st_mtime_ns, st.st_size


# Hashes per file version, so that leave-source-out folds and the final fit (which record the same images
# again and again) read and decode each image once per process.
@functools.lru_cache(maxsize=1 << 18)
def _content_hash_of(version: tuple[str, int, int]) -> bytes:
    return content_hash(version[0])


@functools.lru_cache(maxsize=1 << 18)
def _pixel_dhash_of(version: tuple[str, int, int]) -> bytes:
    return pixel_dhash(load_image(version[0])).tobytes()


def _cached_content_hash(path: str) -> bytes:
    version = _file_version(path)
    return content_hash(path) if version is None else _content_hash_of(version)


def _cached_pixel_dhash(path: str) -> np.ndarray:
    version = _file_version(path)
    if version is None:
        return pixel_dhash(load_image(path))
    return np.frombuffer(_pixel_dhash_of(version), np.uint8)


def content_hashes(table: CxrTable, workers: int = 4) -> np.ndarray:
    """N x CONTENT_BYTES uint8: the content hash of every row."""
    out = _map(_cached_content_hash, table.frame["path"].astype(str).to_list(), workers)
    return np.frombuffer(b"".join(out), np.uint8).reshape(len(out), CONTENT_BYTES)


def pixel_dhashes(table: CxrTable, workers: int = 4) -> np.ndarray:
    """N x 32 uint8: the perceptual hash of every row (decodes every image)."""
    out = _map(_cached_pixel_dhash, table.frame["path"].astype(str).to_list(), workers)
    return np.stack(out) if out else np.zeros((0, DHASH_SIDE * DHASH_SIDE // 8), np.uint8)


def hex_keys(hashes: np.ndarray) -> list[str]:
    return [bytes(row).hex() for row in hashes]


def data_fingerprint(hashes: np.ndarray) -> str:
    """One 16-hex identity for a set of images (order-free): sha256 of their sorted content hashes."""
    return hashlib.sha256(b"".join(sorted(bytes(r) for r in hashes))).hexdigest()[:16]


def near_duplicates(query: np.ndarray, reference: np.ndarray, max_bits: int = NEAR_DUPLICATE_BITS) -> np.ndarray:
    """Boolean per ``query`` row: within ``max_bits`` Hamming distance of some ``reference`` dHash."""
    found = np.zeros(len(query), dtype=bool)
    if not len(query) or not len(reference):
        return found
    step = max(1, 1_000_000 // max(1, len(reference)))  # bound the N x M x 32 XOR block
    for start in range(0, len(query), step):
        q = query[start : start + step]
        dist = _POPCOUNT[q[:, None, :] ^ reference[None, :, :]].sum(axis=2, dtype=np.uint16)
        found[start : start + step] = (dist <= max_bits).any(axis=1)
    return found


def split_record(train: CxrTable, val: CxrTable, workers: int = 4) -> dict[str, np.ndarray]:
    """What a bundle stores about its images: content and perceptual hashes of each split."""
    return {
        "train_content": content_hashes(train, workers),
        "val_content": content_hashes(val, workers),
        "train_dhash": pixel_dhashes(train, workers),
        "val_dhash": pixel_dhashes(val, workers),
    }


def apply_recorded_split(table: CxrTable, record: dict[str, np.ndarray], workers: int = 4) -> CxrTable:
    """``table`` with its ``split`` column set from a recorded split: rows whose content hash the record lists.

    A hash listed k times in a split takes k rows (true duplicate files occur: the Kaggle set has some);
    rows the record does not list are dropped. Raises DataFormatError when recorded images are missing.
    """
    from collections import Counter

    from cxrkit.core.errors import DataFormatError

    keys = [bytes(r) for r in content_hashes(table, workers)]
    wanted = {s: Counter(bytes(r) for r in record[f"{s}_content"]) for s in ("val", "train")}
    split = np.full(len(table), None, dtype=object)
    for i, key in enumerate(keys):
        for name, counter in wanted.items():
            if counter[key] > 0:
                counter[key] -= 1
                split[i] = name
                break
    missing = {name: sum(c.values()) for name, c in wanted.items() if sum(c.values())}
    if missing:
        raise DataFormatError(
            f"The data lacks images the bundle's recorded split lists ({missing}): it is not the data the bundle "
            "was trained on. Fix: point the recipe's data.sources at the same dataset files."
        )
    frame = table.frame.copy()
    frame["split"] = split
    out = CxrTable(frame, table.labels, table.label_space, list(table.notes))
    return out.subset(frame["split"].notna().to_numpy())
