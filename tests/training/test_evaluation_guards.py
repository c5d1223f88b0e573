"""Recorded splits, the seen-image warning, --by groups, the early class check and --record, on a tiny bundle."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cxrkit.cli import app
from cxrkit.core.errors import DataFormatError
from cxrkit.data import load_dataset
from cxrkit.evaluation.run import evaluate_model
from cxrkit.models import load_bundle
from cxrkit.models.records import IMAGES_FILE
from cxrkit.training.data_prep import prepare_table, validation_split
from cxrkit.training.recipe import DataSpec
from tests.conftest import make_learnable_folder

runner = CliRunner()


def _names(table):
    return sorted(table.frame["path"].str.rsplit("/", n=2).str[-2:].str.join("/"))


def test_bundle_records_its_split_and_it_is_reproduced(trained, learnable):
    result, out = trained
    bundle = load_bundle(out / "bundle")
    record = bundle.split_record()
    assert (out / "bundle" / IMAGES_FILE).is_file()
    assert bundle.images["n_train"] == result["n_train"] and bundle.images["n_val"] == result["n_val"]
    assert record["val_content"].shape == (result["n_val"], 8) and record["val_dhash"].shape == (result["n_val"], 32)
    trained_val = prepare_table(DataSpec(sources=[str(learnable)], val=0.25)).split("val")
    # Another seed re-splits differently; the recorded split gives back exactly the images validated on.
    other = DataSpec(sources=[str(learnable)], val=0.25, seed=7)
    assert _names(prepare_table(other).split("val")) != _names(trained_val)
    assert _names(validation_split(other, record)) == _names(trained_val)
    assert "Recorded split:" in (out / "bundle" / "MODEL_CARD.md").read_text()


def test_recorded_split_needs_the_same_images(trained, learnable, tmp_path):
    _, out = trained
    part = tmp_path / "part"
    shutil.copytree(learnable / "NORMAL", part / "NORMAL")
    with pytest.raises(DataFormatError, match="lacks images the bundle's recorded split lists"):
        validation_split(DataSpec(sources=[str(part)], val=0.25), load_bundle(out / "bundle").split_record())


def test_evaluating_on_training_images_warns_and_reports_overlap(trained, learnable, caplog):
    _, out = trained
    with caplog.at_level(logging.WARNING):
        res = evaluate_model(out / "bundle", [str(learnable)], n_boot=0)
    assert res["overlap_with_training"] == {
        "checked": True, "count": 48, "fraction": 1.0, "exact": 48, "near_duplicate": 0
    }  # fmt: skip
    assert "48 of 48 images" in caplog.text and "overstate" in caplog.text


def test_reencoded_copies_are_still_seen_and_new_images_are_not(trained, learnable, tmp_path):
    _, out = trained
    copies = tmp_path / "copies"
    for p in learnable.rglob("*.png"):
        dest = copies / p.parent.name / (p.stem + ".jpg")
        dest.parent.mkdir(parents=True, exist_ok=True)
        Image.open(p).save(dest, quality=95)  # another codec: no byte in common
    overlap = evaluate_model(out / "bundle", [str(copies)], n_boot=0)["overlap_with_training"]
    # These fixtures are pixel noise plus a blob, far noisier than X-rays (tests/data/test_real_data.py checks
    # resized, re-cropped real copies): most, not all, stay within the near-duplicate distance.
    assert overlap["exact"] == 0 and overlap["near_duplicate"] >= 40
    fresh = make_learnable_folder(tmp_path / "fresh", n_per_class=8, seed=3)
    assert evaluate_model(out / "bundle", [str(fresh)], n_boot=0)["overlap_with_training"]["count"] == 0


def test_by_source_table_in_json_and_report(trained, tmp_path):
    _, out = trained
    a = make_learnable_folder(tmp_path / "hospital-a", n_per_class=8, seed=4)
    b = make_learnable_folder(tmp_path / "hospital-b", n_per_class=4, seed=5)
    r = runner.invoke(
        app,
        ["evaluate", "--model", str(out / "bundle"), str(a), str(b), "--by", "source", "--by", "view",
         "--json", "--n-boot", "20", "--out", str(tmp_path / "rep")],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)["by"]["source"]
    assert [(x["group"], x["n"], x["n_positive"]) for x in rows] == [("hospital-a", 16, 8), ("hospital-b", 8, 4)]
    for x in rows:
        assert 0 <= x["auroc"] <= 1 and len(x["auroc_ci"]) == 2 and x["sensitivity"] is not None
    assert json.loads(r.stdout)["by"]["view"][0]["group"] == "(unknown)"
    report = (tmp_path / "rep" / "report.md").read_text()
    assert "## By source" in report and "| hospital-b | PNEUMONIA | 8 | 4 |" in report
    r = runner.invoke(app, ["evaluate", "--model", str(out / "bundle"), str(a), "--by", "hospital"])
    assert r.exit_code == 2 and "no such column" in r.stderr


def test_classes_that_do_not_fit_fail_before_inference(trained, learnable, tmp_path, monkeypatch):
    _, out = trained
    data = tmp_path / "covid"
    shutil.copytree(learnable / "NORMAL", data / "NORMAL")
    shutil.copytree(learnable / "PNEUMONIA", data / "COVID")

    def no_inference(*args, **kwargs):
        raise AssertionError("inference ran before the class check")

    monkeypatch.setattr("cxrkit.evaluation.run.Engine.run_table", no_inference)
    with pytest.raises(DataFormatError) as err:
        evaluate_model(out / "bundle", [str(data)], n_boot=0)
    msg = str(err.value)
    assert "'COVID' (24 images)" in msg and f"{data}::NORMAL,PNEUMONIA" in msg and "--label-map COVID=" in msg
    monkeypatch.undo()
    res = evaluate_model(out / "bundle", [str(data)], label_map=["COVID=PNEUMONIA"], n_boot=0)
    assert res["n"] == 48 and res["n_positive"] == 24


def test_record_appends_a_named_evaluation_to_config_and_card(trained, tmp_path):
    _, out = trained
    bundle_dir = tmp_path / "bundle"
    shutil.copytree(out / "bundle", bundle_dir)
    before = load_bundle(bundle_dir)
    ext = make_learnable_folder(tmp_path / "external-site", n_per_class=6, seed=9)
    r = runner.invoke(
        app,
        ["evaluate", "--model", str(bundle_dir), str(ext), "--by", "source", "--record", "external", "--n-boot", "10"],
    )
    assert r.exit_code == 0, r.output
    evaluate_model(bundle_dir, [str(ext)], record="external-again", n_boot=0)
    after = load_bundle(bundle_dir)
    assert after.fingerprint == before.fingerprint and after.split_record() is not None
    assert list(after.evaluations) == ["external", "external-again"]
    entry = after.evaluations["external"]
    assert entry["n"] == 12 and len(entry["data_fingerprint"]) == 16 and entry["overlap_with_training"]["count"] == 0
    assert entry["by"]["source"][0]["group"] == "external-site" and "auroc" in entry["metrics"]
    assert entry["data_fingerprint"] == after.evaluations["external-again"]["data_fingerprint"]
    card = (bundle_dir / "MODEL_CARD.md").read_text()
    assert "## Results side by side" in card and "| external |" in card and "### external: by source" in card
    assert "validation (recorded at training)" in card
    assert not list(tmp_path.glob(".bundle.*"))  # no temporary folder left behind


def test_threshold_keeps_the_split_record(trained, tmp_path):
    _, out = trained
    r = runner.invoke(app, ["threshold", "--model", str(out / "bundle"), "--out", str(tmp_path / "b"), "--json"])
    assert r.exit_code == 0, r.output
    after = load_bundle(tmp_path / "b")
    np.testing.assert_array_equal(
        after.split_record()["val_content"], load_bundle(out / "bundle").split_record()["val_content"]
    )
    assert json.loads(r.stdout)["validation"]["n"] == load_bundle(out / "bundle").images["n_val"]


def test_dataset_fingerprint_ignores_order(learnable):
    from cxrkit.data.fingerprint import content_hashes, data_fingerprint

    h = content_hashes(load_dataset(learnable))
    assert data_fingerprint(h) == data_fingerprint(h[::-1]) != data_fingerprint(h[1:])
