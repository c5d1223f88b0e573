from __future__ import annotations

import json

from typer.testing import CliRunner

from cxrkit.cli import app
from cxrkit.data import leaking_patients, load_dataset

runner = CliRunner()


def test_summary_json(kaggle_tree):
    r = runner.invoke(app, ["data", "summary", str(kaggle_tree), "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["n_images"] == 20 and s["n_patients"] == 16
    assert s["class_counts"] == {"NORMAL": 8, "PNEUMONIA": 12}


def test_summary_out_writes_plots(kaggle_tree, tmp_path):
    r = runner.invoke(app, ["data", "summary", str(kaggle_tree), "--out", str(tmp_path / "o"), "-q"])
    assert r.exit_code == 0, r.output
    for name in ("class_counts.png", "samples.png", "summary.json"):
        assert (tmp_path / "o" / name).stat().st_size > 100


def test_split_writes_manifest_accepted_by_summary(kaggle_tree, tmp_path):
    m = tmp_path / "manifest.csv"
    r = runner.invoke(app, ["data", "split", str(kaggle_tree), "--out", str(m), "--val", "0.2", "--test", "0.2"])
    assert r.exit_code == 0, r.output
    t = load_dataset(m)
    assert len(t) == 20 and set(t.frame["split"]) <= {"train", "val", "test"}
    assert leaking_patients(t) == []
    r2 = runner.invoke(app, ["data", "summary", str(m), "--json"])
    assert json.loads(r2.stdout)["n_images"] == 20


def test_bad_path_is_a_clear_error(tmp_path):
    (tmp_path / "x.txt").write_text("x")
    r = runner.invoke(app, ["data", "summary", str(tmp_path)])
    assert r.exit_code == 2
    assert "no supported dataset layout" in r.stderr and "--format covid" in r.stderr


def test_summary_harmonise_and_radiography_layout(kaggle_tree, nih_demo, radiography_db):
    from cxrkit.data import VOCABULARY

    r = runner.invoke(app, ["data", "summary", str(radiography_db), "--json", "--size-sample", "0"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["class_counts"]["COVID-19"] == 4
    r = runner.invoke(
        app, ["data", "summary", str(kaggle_tree), str(nih_demo), str(radiography_db), "--harmonise", "--json"]
    )
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["classes"] == list(VOCABULARY) and s["n_images"] == 20 + 5 + 11
    assert s["unknown_label_counts"]["Hernia"] == 12 + 4 + 2 + 2  # Kaggle pneumonia, DB COVID, opacity, viral
    assert s["age_groups"]["child"] == 20 + 1 + 1 + 2
