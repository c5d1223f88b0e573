"""Training from a dataset cache reads it chunk by chunk (ChunkOrderedSampler); from files, as before."""

from __future__ import annotations

import pytest
from torch.utils.data import RandomSampler, WeightedRandomSampler
from torch.utils.data.distributed import DistributedSampler

from cxrkit.core.preprocess import Preprocessing
from cxrkit.data import load_dataset
from cxrkit.data.shard_order import ChunkOrderedSampler
from cxrkit.training.datamodule import CxrDataModule

pytest.importorskip("litdata")


@pytest.fixture(scope="module")
def cached(learnable, tmp_path_factory):
    from cxrkit.data.cache import build_cache

    out = tmp_path_factory.mktemp("cache") / "learnable"
    build_cache(load_dataset(learnable), out, size=32, workers=2)
    return load_dataset(out)


@pytest.mark.parametrize("balanced", [False, True])
def test_a_cache_is_sampled_chunk_by_chunk_and_files_as_before(learnable, cached, balanced):
    prep = Preprocessing(image_size=32)
    files = load_dataset(learnable)
    from_files = CxrDataModule(files, files, prep, None, num_workers=0, balanced_sampler=balanced)
    expected = WeightedRandomSampler if balanced else RandomSampler
    assert type(from_files.train_dataloader().sampler) is expected

    dm = CxrDataModule(cached, cached, prep, None, batch_size=8, num_workers=0, balanced_sampler=balanced, seed=3)
    loader = dm.train_dataloader()
    # a DistributedSampler, so Lightning's DDP keeps it instead of wrapping and reshuffling it
    assert isinstance(loader.sampler, ChunkOrderedSampler) and isinstance(loader.sampler, DistributedSampler)
    rows = list(loader.sampler)
    assert len(rows) == len(cached) and (balanced or sorted(rows) == list(range(len(cached))))
    assert sum(len(y) for _, y in loader) == len(cached)
    if balanced:  # every class drawn about equally (24 + 24 here either way, so check the draw repeats rows)
        assert len(set(rows)) < len(rows)
