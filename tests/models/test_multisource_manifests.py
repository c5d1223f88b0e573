"""recipes/manifests.py: one vocabulary, NaN where a source does not label, leave-source-out folds disjoint."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.real_data
def test_manifests_harmonise_labels_and_hold_out_whole_sources(shared_data, tmp_path):
    cmd = [sys.executable, "recipes/manifests.py", "--data", str(shared_data), "--out", str(tmp_path)]
    subprocess.run(cmd, cwd=REPO, check=True, capture_output=True, env={"PYTHONPATH": str(REPO / "src")})
    full = pd.read_csv(tmp_path / "all.csv")
    assert set(full["source"]) == {"kaggle-pneumonia", "covid-chestxray", "covid19-radiography-db", "nih-chestxray14"}
    kaggle_pneu = full[(full["source"] == "kaggle-pneumonia") & (full["label:Pneumonia"] == 1)]
    assert kaggle_pneu["label:Effusion"].isna().all()  # Kaggle does not label effusions
    assert (kaggle_pneu["label:COVID-19"] == 0).all()  # taken before the pandemic
    covid = full[full["label:COVID-19"] == 1]
    assert (covid["label:Pneumonia"] == 1).all() and set(covid["source"]) == {
        "covid-chestxray",
        "covid19-radiography-db",
    }
    normals = full[full["label:No Finding"] == 1]
    assert (normals.filter(like="label:").drop(columns="label:No Finding") == 0).all().all()
    for name in ("all", "covid3"):
        for lso in tmp_path.glob(f"{name}_lso_*.csv"):
            t = pd.read_csv(lso)
            held = lso.stem.removeprefix(f"{name}_lso_")
            assert set(t.loc[t["split"] == "val", "source"]) == {held}
            assert held not in set(t.loc[t["split"] == "train", "source"])
    c3 = pd.read_csv(tmp_path / "covid3.csv").filter(like="label:")
    assert list(c3.columns) == ["label:NORMAL", "label:PNEUMONIA", "label:COVID-19"]
    assert np.all(c3.sum(axis=1) == 1)
