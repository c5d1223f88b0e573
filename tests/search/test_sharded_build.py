"""Sharded index build (2 CPU ranks, ddp_spawn, gloo) equals the single-process build; shard merging."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cxrkit.cli import app
from cxrkit.data import load_dataset
from cxrkit.data.manifest import write_manifest
from cxrkit.search import IndexFormatError, build_index, load_index, work_dir_for


@pytest.mark.slow  # spawns two ranks (~10 s); the merge tests below cover the shard logic by default
@pytest.mark.timeout(180)
def test_two_rank_build_equals_single_process(search_bundle: Path, search_folder: Path, tmp_path: Path, monkeypatch):
    from cxrkit.search import sharded as sharded_mod

    real_merge, merged = sharded_mod.merge_shards, []

    def spy(folder, key, world_size):  # runs in this process, after the spawned ranks have finished
        shards = {p.name: np.load(p)["rows"].tolist() for p in sorted(Path(folder).glob("rank_*.npz"))}
        merged.append((world_size, shards))
        return real_merge(folder, key, world_size)

    monkeypatch.setattr(sharded_mod, "merge_shards", spy)
    # 23 rows: the ranks get 12 and 11, so uneven shares are covered too.
    table = load_dataset(search_folder).subset(np.arange(23))
    data = tmp_path / "data.csv"
    write_manifest(table, data)
    single = build_index(search_bundle, [str(data)], tmp_path / "single", chunk_size=5)
    out = tmp_path / "sharded"
    args = ["index", "build", str(data), "--model", str(search_bundle), "--out", str(out), "--json"]
    args += ["--devices", "2", "--strategy", "ddp_spawn", "--accelerator", "cpu", "--batch-size", "4"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["count"] == 23
    sharded = load_index(out)
    assert not work_dir_for(out).exists()  # shards are removed once the index is written
    # Each rank embedded its own rows: 0, 2, 4 ... and 1, 3, 5 ... (no padding for predict).
    ((world_size, shards),) = merged
    assert world_size == 2
    assert shards == {"rank_00000.npz": list(range(0, 23, 2)), "rank_00001.npz": list(range(1, 23, 2))}

    assert len(sharded) == len(single) == 23
    assert sharded.frame["path"].tolist() == single.frame["path"].tolist()
    assert sharded.frame.equals(single.frame)
    assert np.array_equal(sharded.labels, single.labels, equal_nan=True)
    np.testing.assert_allclose(sharded.vectors(), single.vectors(), atol=1e-5)
    for key in ("dim", "index_type", "faiss_class", "label_space", "sources", "count"):
        assert sharded.info[key] == single.info[key], key
    assert sharded.fingerprint == single.fingerprint
    queries = single.vectors()[::4]
    s1, i1 = single.search(queries, 5)
    s2, i2 = sharded.search(queries, 5)
    assert np.array_equal(i1, i2)
    np.testing.assert_allclose(s1, s2, atol=1e-5)


def _shard(folder: Path, rank: int, rows, vectors, key: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"rank_{rank:05d}.npz", "wb") as f:
        np.savez(f, rows=np.asarray(rows), vectors=np.asarray(vectors, np.float32), key=np.array(json.dumps(key)))


def test_merge_restores_order_and_drops_padding(tmp_path: Path):
    from cxrkit.search.sharded import merge_shards

    key = {"fingerprint": "f", "paths_sha256": "p", "n": 5, "world_size": 2}
    vec = np.arange(5, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)
    # DistributedSampler(shuffle=False) with padding: rank 0 rows 0, 2, 4; rank 1 rows 1, 3, 0 (0 repeated).
    _shard(tmp_path, 0, [0, 2, 4], vec[[0, 2, 4]], {**key, "rank": 0})
    _shard(tmp_path, 1, [1, 3, 0], vec[[1, 3, 0]], {**key, "rank": 1})
    np.testing.assert_array_equal(merge_shards(tmp_path, key, 2), vec)


def test_merge_refuses_missing_and_foreign_shards(tmp_path: Path):
    from cxrkit.search.sharded import merge_shards

    key = {"fingerprint": "f", "paths_sha256": "p", "n": 4, "world_size": 2}
    _shard(tmp_path, 0, [0, 2], np.ones((2, 3)), key)
    with pytest.raises(IndexFormatError, match=r"rank 1 is missing.*filesystem"):
        merge_shards(tmp_path, key, 2)
    _shard(tmp_path, 1, [1, 3], np.ones((2, 3)), {**key, "fingerprint": "other"})
    with pytest.raises(IndexFormatError, match="another build"):
        merge_shards(tmp_path, key, 2)
    _shard(tmp_path, 1, [1, 7], np.ones((2, 3)), key)
    with pytest.raises(IndexFormatError, match=r"inconsistent: rows 1\.\.7 for 4 images"):
        merge_shards(tmp_path, key, 2)
    _shard(tmp_path, 1, [1], np.ones((1, 3)), key)
    with pytest.raises(IndexFormatError, match=r"cover 3 of 4 rows \(missing e.g. \[3\]\)"):
        merge_shards(tmp_path, key, 2)


def test_sharded_build_rejects_bad_settings(search_bundle: Path, search_folder: Path, tmp_path: Path):
    from cxrkit.core.errors import ConfigError

    with pytest.raises(ConfigError, match="ddp or ddp_spawn"):
        build_index(search_bundle, [str(search_folder)], tmp_path / "x", devices=2, strategy="fsdp")
    one_image = load_dataset(search_folder).subset([0])
    with pytest.raises(ConfigError, match="1 images cannot be shared by 4 ranks"):
        build_index(search_bundle, one_image, tmp_path / "x", devices=2, num_nodes=2, strategy="ddp_spawn")
