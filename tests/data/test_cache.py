"""Dataset shards (cxr data cache): built once, then read wherever a dataset is taken."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from cxrkit.core.errors import DataFormatError
from cxrkit.data import load_dataset
from cxrkit.data.cache import MARKER, build_cache
from cxrkit.data.images import load_image, load_size

pytest.importorskip("litdata")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds")
    for i in range(6):  # each image its own brightness, so a cached image can be matched to its source
        (root / ("NORMAL" if i % 2 else "PNEUMONIA")).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((60, 40), 20 + 40 * i, np.uint8)).save(
            root / ("NORMAL" if i % 2 else "PNEUMONIA") / f"{i}.png"
        )
    return root


@pytest.fixture(scope="module")
def cache(folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("c") / "cache"
    info = build_cache(load_dataset(folder), out, size=32, workers=2)
    return out, info


def test_cache_has_every_image_shrunk_in_the_tables_order(folder, cache):
    out, info = cache
    assert info["images"] == 6 and json.loads((out / MARKER).read_text())["size"] == 32
    original = load_dataset(folder)
    table = load_dataset(out)
    assert len(table) == 6 and table.classes == original.classes
    for row in range(len(table)):
        img = load_image(table.frame["path"][row])
        assert img.shape == (32, 21) and img.dtype == np.float32  # 60x40 -> longer side 32, aspect kept
        assert load_size(table.frame["path"][row]) == (21, 32)
        # the row's label is the label of the image stored there: match the pixels to the source image
        src = [abs(load_image(p).mean() - img.mean()) for p in original.frame["path"]]
        source_row = int(np.argmin(src))
        assert min(src) < 1e-3 and np.array_equal(table.labels[row], original.labels[source_row])


def test_the_table_csv_and_class_selection_work_too(cache):
    out, _ = cache
    assert len(load_dataset(out / "table.csv")) == 6
    assert load_dataset(f"{out}::NORMAL,PNEUMONIA").classes == ("NORMAL", "PNEUMONIA")


def test_a_reference_past_the_end_is_a_clear_error(cache):
    out, _ = cache
    with pytest.raises(DataFormatError, match="rebuild"):
        load_image(f"{out}/::shard[99]")


def test_cache_rows_have_content_and_pixel_hashes(cache):
    """A bundle trained from a cache records its split by these hashes (split_record at the end of training)."""
    from cxrkit.data.fingerprint import content_hashes, pixel_dhashes, split_record

    out, _ = cache
    table = load_dataset(out)
    hashes = content_hashes(table, workers=1)
    assert hashes.shape == (6, 8) and len({bytes(h) for h in hashes}) == 6
    assert split_record(table, table, workers=1)["val_content"].tolist() == hashes.tolist()
    assert pixel_dhashes(table, 1).shape == (6, 32)
