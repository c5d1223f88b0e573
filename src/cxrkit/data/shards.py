"""Reading a dataset cache (``cxr data cache``; built by :mod:`cxrkit.data.cache`): its layout and one image by
reference. Apart from the builder so that ``load_image`` (which the builder decodes with) can read cache rows
without an import circle.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from cxrkit.core.errors import DataFormatError

MARKER = "cxrkit_cache.json"
SHARDS = "shards"
CACHE_REF = re.compile(r"^(?P<root>.+?)/?::shard\[(?P<index>\d+)\]$")
REMOTE = ("s3://", "gs://", "azure://")


def is_cache(path: str | Path) -> bool:
    return str(path).startswith(REMOTE) or (Path(path) / MARKER).is_file()


@functools.lru_cache(maxsize=8)
def open_shards(root: str, pid: int) -> Any:  # pid: each DataLoader worker opens its own reader
    from litdata import StreamingDataset

    # batch_decode=0: deserialise only the item asked for. LitData's "auto" decodes a window of 256 items
    # around it (made for reading in order), so a shuffled read cost 256 copies: 150 vs 29k items/s.
    if root.startswith(REMOTE):
        from cxrkit.core.settings import shard_cache_dir

        if root.startswith("s3://"):
            _allow_plain_http_endpoint()
        ds = StreamingDataset(f"{root}/{SHARDS}", cache_dir=str(shard_cache_dir()), batch_decode=0)
        # LitData's default for reads by index is one ranged GET per item (two requests per image, nothing
        # kept): every epoch would re-read every image over the network. Whole chunks are downloaded once
        # into the shared folder instead, which is what the chunk-ordered sampler plans for. Private: the
        # public setter needs a reader, which the first read creates (tests/data/test_cache_s3.py checks it).
        ds._on_demand_bytes = False
        return ds
    if not (Path(root) / MARKER).is_file():
        raise DataFormatError(f"{root}: not a cxrkit cache (no {MARKER}). Fix: build it with cxr data cache.")
    return StreamingDataset(str(Path(root) / SHARDS), batch_decode=0)


def _allow_plain_http_endpoint() -> None:
    """Let LitData's chunk downloads reach an ``http://`` S3 endpoint (MinIO, Ceph or moto on a private net).

    LitData reads the index with boto3, which follows ``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_S3``, or
    the profile's ``endpoint_url``), but downloads chunks with obstore, which it builds with that endpoint and
    fixed client options that refuse plain HTTP ("BadScheme"), and obstore ignores ``AWS_ALLOW_HTTP``.
    So when boto3 resolves an http:// endpoint, obstore is allowed HTTP too (https endpoints: unchanged).
    """
    import boto3
    from litdata.streaming import downloader

    endpoint = boto3.client("s3").meta.endpoint_url or ""
    options = getattr(downloader, "_OBSTORE_CLIENT_OPTIONS", None)
    if endpoint.startswith("http://") and isinstance(options, dict):
        downloader._OBSTORE_CLIENT_OPTIONS = {**options, "allow_http": "true"}


def cache_images(ds: Any) -> int:
    """All the images of a shard reader. Not ``len(ds)``: under DDP LitData counts only this rank's share,
    while ``ds[K]`` takes the global index K."""
    return sum(end - start for start, end in ds.region_of_interest)


def load_cached_image(ref: str) -> np.ndarray:
    """Image ``K`` of a ``ROOT/::shard[K]`` reference as float32 (H, W) in [0, 1]."""
    return cached_array(ref).astype(np.float32) / 255.0


def cached_array(ref: str) -> np.ndarray:
    """Image ``K`` of a ``ROOT/::shard[K]`` reference as stored: uint8 (H, W)."""
    m = CACHE_REF.match(ref)
    if m is None:
        raise DataFormatError(f"{ref}: not a cache reference (ROOT/::shard[K]).")
    ds = open_shards(m["root"], os.getpid())
    index, total = int(m["index"]), cache_images(ds)
    if index >= total:
        raise DataFormatError(f"{ref}: the cache has {total} images. Fix: rebuild it with cxr data cache.")
    return ds[index]["image"]
