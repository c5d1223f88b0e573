"""Index build / load / query / add, atomic and resumable builds, model fingerprint checks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from cxrkit.data import load_dataset
from cxrkit.search import (
    IndexFormatError,
    ModelMismatchError,
    add_to_index,
    build_index,
    load_index,
    query_index,
    work_dir_for,
)
from cxrkit.search import embeddings as emb_mod


def test_round_trip_top1_is_itself(built_index: Path, search_folder: Path, search_bundle: Path):
    index = load_index(built_index)
    info = json.loads((built_index / "index.json").read_text())
    assert info["index_type"] == "exact" and info["faiss_class"] == "IndexFlatIP"
    assert info["model"]["architecture"] == "tiny_cnn" and len(info["model"]["fingerprint"]) == 64
    assert info["dim"] == index.dim == 128 and info["count"] == len(index) == 24
    assert not work_dir_for(built_index).exists()  # the resumable work folder is cleaned up
    assert np.allclose(np.linalg.norm(index.vectors(), axis=1), 1.0, atol=1e-5)
    queries = index.frame["path"].tolist()[::5]
    results = query_index(index, queries, model=search_bundle, k=5)
    for q, r in zip(queries, results, strict=True):
        top = r["neighbours"][0]
        assert top["path"] == q and top["similarity"] == pytest.approx(1.0, abs=1e-4)
        assert [h["rank"] for h in r["neighbours"]] == [1, 2, 3, 4, 5]
        sims = [h["similarity"] for h in r["neighbours"]]
        assert sims == sorted(sims, reverse=True)
        assert top["labels"] == [Path(q).parent.name] and top["patient_id"]


def test_query_uses_recorded_model_by_default(built_index: Path):
    index = load_index(built_index)
    q = index.frame["path"].iat[3]
    (r,) = query_index(index, [q], k=3)
    assert r["neighbours"][0]["path"] == q


def test_mismatched_model_is_refused(built_index: Path, other_bundle: Path, search_bundle: Path):
    from cxrkit.models import load_bundle

    index = load_index(built_index)
    other = load_bundle(other_bundle)
    with pytest.raises(ModelMismatchError) as err:
        query_index(index, [index.frame["path"].iat[0]], model=other, k=3)
    msg = str(err.value)
    assert other.fingerprint[:16] in msg and index.fingerprint[:16] in msg and "Fix" in msg
    assert other.fingerprint != index.fingerprint
    with pytest.raises(ModelMismatchError):
        add_to_index(built_index, [str(Path(index.frame["path"].iat[0]).parent)], model=other)


def test_add_equals_full_rebuild(search_bundle: Path, search_folder: Path, tmp_path: Path):
    table = load_dataset(search_folder)
    first, second = np.arange(0, 15), np.arange(15, len(table))
    build_index(search_bundle, table.subset(first), tmp_path / "inc", chunk_size=4)
    added = add_to_index(tmp_path / "inc", table.subset(second), model=search_bundle, chunk_size=4)
    full = build_index(search_bundle, table, tmp_path / "full", chunk_size=7)
    assert len(added) == len(full) == len(table)
    assert added.frame["path"].tolist() == full.frame["path"].tolist()
    assert np.array_equal(added.labels, full.labels, equal_nan=True)
    np.testing.assert_allclose(added.vectors(), full.vectors(), atol=1e-5)
    s1, i1 = added.search(full.vectors(), 6)
    s2, i2 = full.search(full.vectors(), 6)
    np.testing.assert_allclose(s1, s2, atol=1e-5)
    assert (i1[:, 0] == i2[:, 0]).all()
    # Adding the same images again changes nothing.
    again = add_to_index(tmp_path / "inc", table.subset(second), model=search_bundle)
    assert len(again) == len(table)


def test_interrupted_build_keeps_old_index_and_resumes(search_bundle, search_folder, tmp_path, monkeypatch):
    table = load_dataset(search_folder)
    out = tmp_path / "index"
    build_index(search_bundle, table.subset(np.arange(8)), out, chunk_size=4)
    real = emb_mod.Engine.run_table
    calls = {"n": 0}

    def failing(*args, **kwargs):
        if calls["n"] == 3:
            raise KeyboardInterrupt("simulated interruption")
        calls["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(emb_mod.Engine, "run_table", failing)
    with pytest.raises(KeyboardInterrupt):
        build_index(search_bundle, table, out, chunk_size=4)  # 24 images: 6 chunks
    old = load_index(out)
    assert len(old) == 8  # the previous index is untouched and loads
    assert len(list(work_dir_for(out).glob("chunk_*.npy"))) == 3

    calls["n"] = 0

    def counting(*args, **kwargs):
        calls["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(emb_mod.Engine, "run_table", counting)
    new = build_index(search_bundle, table, out, chunk_size=4)
    assert calls["n"] == 3  # only the 3 missing chunks were computed
    assert len(new) == 24 and not work_dir_for(out).exists()
    fresh = build_index(search_bundle, table, tmp_path / "fresh", chunk_size=4)
    np.testing.assert_allclose(new.vectors(), fresh.vectors(), atol=1e-5)


def test_stale_work_folder_of_other_build_is_discarded(search_bundle, search_folder, tmp_path):
    table = load_dataset(search_folder)
    work = work_dir_for(tmp_path / "index")
    work.mkdir()
    (work / "work.json").write_text('{"fingerprint": "other"}')
    np.save(work / "chunk_00000.npy", np.zeros((4, 128), np.float32))
    index = build_index(search_bundle, table, tmp_path / "index", chunk_size=4)
    assert np.allclose(np.linalg.norm(index.vectors(), axis=1), 1.0, atol=1e-5)


def test_incomplete_or_inconsistent_index_is_refused(built_index: Path, tmp_path: Path):
    broken = tmp_path / "broken"
    shutil.copytree(built_index, broken)
    (broken / "metadata.csv").unlink()
    with pytest.raises(IndexFormatError, match=r"missing metadata\.csv.*cxr index build"):
        load_index(broken)
    shutil.rmtree(broken)
    shutil.copytree(built_index, broken)
    lines = (broken / "metadata.csv").read_text().splitlines()
    (broken / "metadata.csv").write_text("\n".join(lines[:-2]) + "\n")
    with pytest.raises(IndexFormatError, match=r"corrupt.*metadata\.csv"):
        load_index(broken)
    info = json.loads((broken / "index.json").read_text())
    del info["checksums"]  # as an index from before checksums: the counts still disagree
    (broken / "index.json").write_text(json.dumps(info))
    with pytest.raises(IndexFormatError, match=r"inconsistent.*metadata rows"):
        load_index(broken)
    with pytest.raises(IndexFormatError, match="No index folder"):
        load_index(tmp_path / "nowhere")


def test_flipped_byte_in_vectors_is_refused(built_index: Path, tmp_path: Path):
    """Issue 12 item 9: a flipped byte inside the vectors used to load and answer silently."""
    broken = tmp_path / "flipped"
    shutil.copytree(built_index, broken)
    raw = bytearray((broken / "index.faiss").read_bytes())
    raw[len(raw) // 2] ^= 0x01
    (broken / "index.faiss").write_bytes(bytes(raw))
    with pytest.raises(IndexFormatError, match=r"corrupt.*index\.faiss.*cxr index build"):
        load_index(broken)
    assert set(json.loads((built_index / "index.json").read_text())["checksums"]) == {
        "index.faiss",
        "metadata.csv",
        "labels.npy",
    }


def test_grid_png(built_index: Path, tmp_path: Path):
    from PIL import Image

    from cxrkit.search import similar_cases_grid

    index = load_index(built_index)
    (r,) = query_index(index, [index.frame["path"].iat[0]], k=36)
    assert len(r["neighbours"]) == 24  # k larger than the index: all of it
    out = similar_cases_grid(r, tmp_path / "grid.png")
    with Image.open(out) as im:
        w, h = im.size
    assert w > 500 and h > 300
