"""Shuffling rows of a dataset cache (cxr data cache) chunk by chunk, so a loader reads its shards in order.

A shuffled loader that indexes the shards at random makes every read land in another LitData chunk:
from object storage each chunk is then fetched (64 MB) long before its rows are all used, and on a local
disk the page cache holds every chunk at once. ``ChunkOrderedSampler`` keeps most of a full shuffle's
randomness but reads a few chunks at a time: each epoch it permutes the chunks, groups them into windows
of ``window`` chunks, and permutes the rows inside each window (a blocked shuffle, as LitData's and
WebDataset's own iterators do). ``cxr data cache`` writes the rows in a seeded random order, so every
chunk is a random sample of the dataset (classes and sources mixed) and a window's batches are too.

What stays exact and what is approximated:
- every row is drawn exactly once per epoch (no weights), or the same weighted draw with replacement
  as ``WeightedRandomSampler`` (class / source balancing): only the order of the drawn rows is blocked;
- DDP: each rank takes a contiguous block of the epoch's order (the last block padded by repeating the
  first rows, as ``DistributedSampler`` pads), so the ranks read disjoint chunks and disjoint rows;
- the order within an epoch is random only within a window: two rows from chunks more than ``window``
  chunks apart never share a batch.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data.distributed import DistributedSampler

from cxrkit.data.shards import CACHE_REF, open_shards

WINDOW = 4  # chunks shuffled together: about 4,000 images of 256 px (64 MB chunks)


@functools.lru_cache(maxsize=8)
def _chunk_starts(root: str) -> np.ndarray:
    """Shard index where each chunk of the cache at ``root`` begins (the rows are numbered chunk by chunk)."""
    sizes = [end - start for start, end in open_shards(root, os.getpid()).region_of_interest]
    return np.cumsum([0, *sizes])[:-1]


def shard_chunks(paths: Sequence[str]) -> np.ndarray | None:
    """The chunk of every row (a number unique across caches), or None unless every row is a cache row."""
    refs = [CACHE_REF.match(str(p)) for p in paths]
    if not refs or any(m is None for m in refs):
        return None
    roots = sorted({m["root"] for m in refs if m is not None})
    offsets, base = {}, 0
    for root in roots:  # chunk numbers of the second cache follow those of the first
        offsets[root] = (base, _chunk_starts(root))
        base += len(offsets[root][1])
    out = np.empty(len(refs), dtype=np.int64)
    for i, m in enumerate(refs):
        assert m is not None
        first, starts = offsets[m["root"]]
        out[i] = first + np.searchsorted(starts, int(m["index"]), side="right") - 1
    return out


def chunk_window_order(chunks: np.ndarray, rows: np.ndarray, window: int, rng: np.random.Generator) -> np.ndarray:
    """``rows`` (indices into ``chunks``) reordered: chunks permuted, rows permuted within each window of
    ``window`` consecutive chunks of that permutation."""
    ids = np.unique(chunks)
    place = np.empty(int(ids.max()) + 1, dtype=np.int64)
    place[rng.permutation(ids)] = np.arange(len(ids))
    window_of_row = place[chunks[rows]] // max(1, window)
    return rows[np.lexsort((rng.random(len(rows)), window_of_row))]


class ChunkOrderedSampler(DistributedSampler):
    """Row indices for one rank, in chunk-window order (see the module docstring); ``set_epoch`` reshuffles.

    A ``DistributedSampler`` so that Lightning keeps it under DDP instead of wrapping it in its own
    (which would reshuffle the order globally and split it by striding). ``num_replicas``/``rank``
    default to the process group's, or a single process.
    """

    def __init__(
        self,
        chunks: np.ndarray,
        weights: np.ndarray | None = None,
        window: int = WINDOW,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
    ):
        dist = torch.distributed.is_available() and torch.distributed.is_initialized()
        num_replicas = num_replicas if num_replicas is not None else (torch.distributed.get_world_size() if dist else 1)
        rank = rank if rank is not None else (torch.distributed.get_rank() if dist else 0)
        super().__init__(range(len(chunks)), num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.chunks = np.asarray(chunks, dtype=np.int64)
        self.weights = None if weights is None else np.asarray(weights, dtype=np.float64) / np.sum(weights)
        self.window = window
        self.num_samples = math.ceil(len(self.chunks) / self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas

    def epoch_order(self) -> np.ndarray:
        """All ranks' rows for this epoch (the same on every rank: seeded by seed and epoch)."""
        rng = np.random.default_rng([self.seed, self.epoch])
        n = len(self.chunks)
        rows = np.arange(n) if self.weights is None else rng.choice(n, size=n, replace=True, p=self.weights)
        order = chunk_window_order(self.chunks, rows, self.window, rng)
        return np.resize(order, self.total_size)  # pads by repeating the first rows

    def __iter__(self):
        block = self.epoch_order()[self.rank * self.num_samples : (self.rank + 1) * self.num_samples]
        return iter(block.tolist())

    def __len__(self) -> int:
        return self.num_samples
