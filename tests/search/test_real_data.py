"""On the real data in ../shared/data (skipped when it is absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cxrkit.data import load_dataset
from cxrkit.models import load_bundle
from cxrkit.search import build_index, evaluate_index, patient_timeline, query_index, rank_patients

pytestmark = pytest.mark.real_data


def test_covid_timeline_ordered_by_offset(shared_data: Path, search_bundle: Path, tmp_path: Path):
    root = shared_data / "covid-chestxray"
    meta = pd.read_csv(root / "metadata.csv")
    table = load_dataset(root)
    counts = table.frame["patient_id"].value_counts()
    patient = str(counts.index[0])
    assert counts.iloc[0] >= 4
    bundle = load_bundle(search_bundle)
    tl = patient_timeline(bundle, table, patient)
    assert tl["ordered_by"] == "offset" and tl["n_images"] == counts.iloc[0]
    offsets = [s["offset"] for s in tl["studies"]]
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
    expected = sorted(set(pd.to_numeric(meta.loc[meta["patientid"].astype(str) == patient, "offset"]).dropna()))
    assert set(offsets) <= set(expected)
    assert tl["verdict"] in {"worsening", "improving", "stable"}
    assert all(0.0 <= s["severity"] <= 1.0 for s in tl["studies"])
    # A reading list over a handful of multi-study patients.
    few = table.subset(table.frame["patient_id"].isin(counts.index[:3]).to_numpy())
    ranked = rank_patients(bundle, few)
    assert ranked["n_patients"] == 3 and {p["patient_id"] for p in ranked["patients"]} == set(counts.index[:3])


def test_kaggle_index_query(shared_data: Path, search_bundle: Path, tmp_path: Path):
    table = load_dataset(shared_data / "kaggle-pneumonia" / "train")
    rng = np.random.default_rng(0)
    rows = np.concatenate([rng.choice(np.flatnonzero(table.labels[:, i] == 1), 20, replace=False) for i in range(2)])
    sub = table.subset(rows)
    index = build_index(search_bundle, sub, tmp_path / "kaggle", chunk_size=16)
    assert len(index) == 40
    queries = sub.frame["path"].tolist()[::10]
    results = query_index(index, queries, model=search_bundle, k=8)
    for q, r in zip(queries, results, strict=True):
        hits = r["neighbours"]
        assert hits[0]["path"] == q and hits[0]["similarity"] == pytest.approx(1.0, abs=1e-4)
        assert all(h["labels"] and h["labels"][0] in {"NORMAL", "PNEUMONIA"} for h in hits)
        assert all(-1.0 <= h["similarity"] <= 1.0 + 1e-5 for h in hits)
    ev = evaluate_index(index, k=5)
    assert ev["n_queries"] == 40 and 0.0 <= ev["precision_at_k"] <= 1.0


def test_covid_patient_173_prior_study_first(shared_data: Path):
    """The collection's patient 173: '...-prior.jpg' has no offset, the others days 3-10 (issue 12, item 11)."""
    from cxrkit.search import order_studies

    table = load_dataset(shared_data / "covid-chestxray")
    sub = table.frame[table.frame["patient_id"].astype(str) == "173"].reset_index(drop=True)
    order, key, values, notes = order_studies(sub)
    names = [Path(sub["path"].iat[i]).name for i in order]
    assert len(names) == 5 and key == "offset"
    assert names[0].endswith("-prior.jpg")
    assert [v[0] for v in values[1:]] == [3.0, 7.0, 9.0, 10.0]
    assert any("prior" in n for n in notes)


def test_cli_timeline_patient_173_says_how_it_was_ordered(shared_data: Path, tmp_path: Path):
    import json

    from typer.testing import CliRunner

    from cxrkit.cli import app

    args = ["timeline", "--model", "covid3", str(shared_data / "covid-chestxray"), "--patient", "173"]
    r = CliRunner().invoke(app, [*args, "--json", "--plot", str(tmp_path / "t.png")])
    assert r.exit_code == 0, r.output
    tl = json.loads(r.stdout)
    assert tl["n_images"] == 5 and tl["n_studies"] == 5
    assert tl["studies"][0]["images"][0].endswith("-prior.jpg") and "prior" in tl["studies"][0]["order_basis"]
    assert [s["offset"] for s in tl["studies"][1:]] == [3.0, 7.0, 9.0, 10.0]
    assert "day offset where present" in tl["order_rule"] and (tmp_path / "t.png").stat().st_size > 0
    text = CliRunner().invoke(app, args)
    assert "ordered by day offset where present" in text.stdout and "prior" in text.stdout
