"""Dataset shards: every image decoded once, resized and stored as uint8, next to the dataset's table.

``cxr data cache DATA... --size 256 --out CACHE/`` writes::

    CACHE/
      shards/            LitData chunks (``litdata.optimize``): one uint8 (H, W) array per image,
                         its longer side ``size`` px (aspect ratio kept, never upscaled)
      table.csv          the table as a cxrkit manifest; each path is ``::shard[K]``
      cxrkit_cache.json  what was cached, from which sources, at which size

Wherever cxrkit takes a dataset it takes ``CACHE`` (or ``CACHE/table.csv``): the rows' paths become
``CACHE/::shard[K]`` and ``load_image`` reads image K from the shards instead of decoding a file, so
training (including multi-node DDP: each rank reads its own rows), evaluation and index building run
unchanged and the model's own resize policy (squash/letterbox) and augmentation still apply.
``s3://bucket/prefix`` caches are streamed by LitData: each chunk downloaded once per machine, when first read, into
``$CXRKIT_SHARD_CACHE`` (endpoint and credentials: the standard AWS variables; docs/SCALING.md).

Why LitData and not WebDataset: cxrkit samples rows by index (class balancing, patient splits, DDP's
sampler) and evaluates arbitrary splits of a cache. LitData serves both an item by index (its chunks are
memory-mapped) and chunk-ordered reads: training shuffles chunk by chunk (``ChunkOrderedSampler`` in
``cxrkit.data.shard_order``: exact per-epoch row sets and DDP split, blocked order), so from object
storage it fetches each chunk once per epoch, as a WebDataset tar stream would. WebDataset offers only
the in-order stream (a shuffle buffer instead of a sampler), and was no faster in the same loader
(docs/PERFORMANCE.md, ``benchmarks/data_loading.py --compare-webdataset``). One LitData setting
matters: its default ``batch_decode="auto"`` deserialises a window of 256 items around each item read (made
for in-order iteration), so a shuffled ``dataset[i]`` cost 256 copies: 150 items/s against 22k in order
(2,000-image local cache). With ``batch_decode=0`` (below) it reads 29k items/s at random.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from cxrkit.core.errors import ConfigError, DataFormatError
from cxrkit.core.files import atomic_dir
from cxrkit.data.shards import MARKER, REMOTE, SHARDS, cache_images
from cxrkit.data.table import CxrTable

TABLE = "table.csv"


def _encode(item: tuple[int, str], size: int) -> dict[str, Any]:
    """One row: decode (any format cxrkit reads), shrink so the longer side is ``size``, store uint8."""
    import torch
    import torch.nn.functional as F

    from cxrkit.data.images import load_image

    index, path = item
    img = load_image(path)
    h, w = img.shape
    scale = size / max(h, w)
    if scale < 1:
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        x = torch.from_numpy(np.ascontiguousarray(img))[None, None]
        img = F.interpolate(x, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)[0, 0].numpy()
    return {"index": index, "image": np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)}


def build_cache(table: CxrTable, out: str | Path, size: int = 256, workers: int | None = None) -> dict[str, Any]:
    """Write the shards and table of ``table`` to ``out`` (atomically: a reader never sees half a cache)."""
    from litdata import StreamingDataset, optimize

    from cxrkit.data.manifest import write_manifest

    if not 32 <= size <= 2048:
        raise ConfigError(f"--size must be between 32 and 2048 px, got {size}.")
    if len(table) == 0:
        raise DataFormatError("The dataset has no images to cache.")
    out = Path(out)
    workers = max(1, min(workers or os.cpu_count() or 1, len(table)))
    # A seeded random order, so every chunk is a random sample (classes, sources) for chunk-ordered reads.
    perm = np.random.default_rng(0).permutation(len(table))
    inputs = [(int(i), str(table.frame["path"].iloc[i])) for i in perm]
    # LitData reports progress on stdout: keep stdout for the command's JSON.
    with atomic_dir(out) as tmp, contextlib.redirect_stdout(sys.stderr):
        optimize(
            fn=functools.partial(_encode, size=size),
            inputs=inputs,
            output_dir=str(tmp / SHARDS),
            chunk_bytes="64MB",
            num_workers=workers,
            start_method="fork" if os.name == "posix" else None,
        )
        # optimize's workers interleave rows: put the table in the shards' order (row K = shard item K).
        ds = StreamingDataset(str(tmp / SHARDS))
        order = [int(ds[k]["index"]) for k in range(cache_images(ds))]
        cached = table.subset(np.asarray(order))
        cached.frame["path"] = [f"::shard[{k}]" for k in range(len(order))]
        write_manifest(cached, tmp / TABLE)
        info = {"images": len(order), "size": size, "classes": list(table.classes), "task": table.label_space.task.value,
                "sources": sorted({str(s) for s in table.frame["source"].dropna().unique()}), "format": "litdata"}  # fmt: skip
        (tmp / MARKER).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return {"cache": str(out), **info}


def load_cache(path: str | Path) -> CxrTable:
    """The table of a cache folder (or ``s3://`` prefix); its paths point into the shards."""
    from cxrkit.data.adapters.csv_generic import CsvAdapter

    text = str(path)
    if text.startswith(REMOTE):
        uri = text.rstrip("/")
        with tempfile.TemporaryDirectory(prefix="cxrkit-cache-") as tmp:
            table = CsvAdapter().load(_download_table(uri, Path(tmp)))
        table.frame["path"] = [f"{uri}/{Path(p).name}" for p in table.frame["path"]]
        return table
    return CsvAdapter().load(Path(path) / TABLE)


def _download_table(uri: str, folder: Path) -> Path:
    if not uri.startswith("s3://"):
        raise ConfigError(f"{uri}: only s3:// caches can be read remotely. Fix: copy the cache to a local folder.")
    import boto3

    bucket, _, prefix = uri[5:].partition("/")
    local = folder / TABLE
    boto3.client("s3").download_file(bucket, f"{prefix.rstrip('/')}/{TABLE}".lstrip("/"), str(local))
    return local
