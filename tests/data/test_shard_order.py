"""Chunk-ordered shuffling of dataset-cache rows (ChunkOrderedSampler): complete, windowed, reshuffled, split."""

from __future__ import annotations

import itertools
import json
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from cxrkit.data import load_dataset
from cxrkit.data.shard_order import ChunkOrderedSampler, shard_chunks

# 10 chunks of unequal size, rows not grouped by chunk (a split of a cache is any subset, in any order)
CHUNKS = np.random.default_rng(1).permutation(np.repeat(np.arange(10), [7, 3, 5, 9, 1, 6, 4, 8, 2, 5]))


def test_an_epoch_is_a_permutation_of_every_row_read_window_by_window():
    sampler = ChunkOrderedSampler(CHUNKS, window=3, seed=0)
    order = list(sampler)
    assert sorted(order) == list(range(len(CHUNKS))) and len(sampler) == len(CHUNKS)
    # the rows of a window (3 chunks) come together: once the order leaves a window it never returns
    chunk_seq = [int(CHUNKS[r]) for r in order]
    windows, current = [], set()
    for c in chunk_seq:
        if c not in current and len(current) == 3:
            windows.append(current)
            current = set()
        current.add(c)
    windows.append(current)
    assert len(windows) == 4 and sorted(c for w in windows for c in w) == list(range(10))
    # and within a window the rows are mixed, not chunk after chunk
    assert sum(a != b for a, b in itertools.pairwise(chunk_seq)) > 9


def test_the_order_changes_with_the_epoch_and_the_seed_and_repeats_with_both():
    a = ChunkOrderedSampler(CHUNKS, seed=0)
    first = list(a)
    a.set_epoch(1)
    second = list(a)
    b = ChunkOrderedSampler(CHUNKS, seed=1)
    assert first != second and first != list(b)
    a.set_epoch(0)
    assert list(a) == first == list(ChunkOrderedSampler(CHUNKS, seed=0))


@pytest.mark.parametrize("world", [2, 3])
def test_ddp_ranks_read_disjoint_rows_and_together_every_row(world):
    ranks = [list(ChunkOrderedSampler(CHUNKS, window=2, seed=4, num_replicas=world, rank=r)) for r in range(world)]
    assert len({len(r) for r in ranks}) == 1  # equal counts, or DDP's collectives would hang
    rows = [i for r in ranks for i in r]
    assert set(rows) == set(range(len(CHUNKS)))
    assert len(rows) - len(CHUNKS) < world  # padding only to an equal split (55 rows: 1 extra for 2 ranks)
    if len(CHUNKS) % world == 0:
        assert all(set(a).isdisjoint(b) for i, a in enumerate(ranks) for b in ranks[i + 1 :])
    # each rank reads a contiguous stretch of the epoch's order, so ranks share only the chunks of a
    # boundary window (2 chunks) and of the padding; a strided split would give each rank nearly all 10
    chunk_sets = [{int(CHUNKS[i]) for i in r} for r in ranks]
    assert sum(len(s) for s in chunk_sets) <= 10 + (world - 1) * 3


def test_weights_draw_with_replacement_like_the_weighted_sampler():
    w = np.where(CHUNKS % 2 == 0, 1.0, 0.0)  # only even chunks may be drawn
    sampler = ChunkOrderedSampler(CHUNKS, weights=w, seed=0)
    rows = list(sampler)
    assert len(rows) == len(CHUNKS) and all(CHUNKS[r] % 2 == 0 for r in rows)
    assert max(Counter(rows).values()) > 1  # with replacement


def test_shard_chunks_maps_cache_rows_to_their_chunk_and_files_to_none(tmp_path):
    pytest.importorskip("litdata")
    from cxrkit.data.cache import build_cache

    for i in range(8):
        folder = tmp_path / "ds" / ("NORMAL" if i % 2 else "PNEUMONIA")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((40, 40), 10 * i, np.uint8)).save(folder / f"{i}.png")
    files = load_dataset(tmp_path / "ds")
    assert shard_chunks(files.frame["path"]) is None
    build_cache(files, tmp_path / "cache", size=32, workers=2)  # a chunk per writer process that got rows
    paths = load_dataset(tmp_path / "cache").frame["path"].to_list()
    chunks = shard_chunks(paths)
    index = json.loads((tmp_path / "cache" / "shards" / "index.json").read_text())
    sizes = [c["chunk_size"] for c in index["chunks"]]  # LitData shares the rows out unevenly (e.g. 7 + 1)
    assert chunks is not None and chunks.tolist() == [k for k, n in enumerate(sizes) for _ in range(n)]
    assert shard_chunks([*paths, str(files.frame["path"][0])]) is None  # mixed: not chunk-ordered
    sub = chunks[[5, 0, 3]]
    assert shard_chunks([paths[5], paths[0], paths[3]]).tolist() == sub.tolist()
