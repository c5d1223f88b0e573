from __future__ import annotations

import json

import numpy as np
import torch
from typer.testing import CliRunner

from cxrkit.cli import app
from cxrkit.data import load_dataset
from cxrkit.models import load_bundle, logits_to_proba
from cxrkit.models.engine import Engine, InferenceOptions
from cxrkit.serving.predictor import Predictor

runner = CliRunner()


def test_fit_learns_and_writes_everything(trained):
    result, out = trained
    assert result["val_auroc"] > 0.9  # the blob is easy: a broken loop or loss would not get here
    for name in ("bundle/model.safetensors", "bundle/config.json", "bundle/MODEL_CARD.md", "metrics.csv",
                 "learning_curve.png", "val_report/report.html", "result.json", "checkpoints/last.ckpt"):  # fmt: skip
        assert (out / name).is_file(), name
    cfg = json.loads((out / "bundle" / "config.json").read_text())
    assert cfg["label_space"] == {"task": "binary", "classes": ["NORMAL", "PNEUMONIA"]}
    assert cfg["thresholds"]["PNEUMONIA"] == result["thresholds"][0]
    assert cfg["data_summary"]["split"]["grouped_by"] == "patient"
    assert "not a medical device" in (out / "bundle" / "MODEL_CARD.md").read_text().lower()


def test_bundle_round_trip_matches_the_in_memory_model(trained, tmp_path):
    """Saving then loading gives back the in-memory model (weights, buffers, settings), not the old file."""
    from cxrkit.models import save_bundle

    _, out = trained
    model = load_bundle(out / "bundle")
    with torch.no_grad():  # weights that exist only in memory: a save that wrote stale weights would fail
        for t in (*model.model.parameters(), *model.model.buffers()):
            if t.is_floating_point():
                t.mul_(1.5).add_(0.01)
    saved = save_bundle(
        tmp_path / "copy", model.model, model.architecture, model.label_space, model.preprocessing,
        model.thresholds, model.metrics, model.data_summary, model.license, model_kwargs=model.model_kwargs,
    )  # fmt: skip
    loaded = load_bundle(saved)
    expected = model.model.state_dict()
    assert loaded.model.state_dict().keys() == expected.keys()
    for key, value in loaded.model.state_dict().items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=0, msg=key)
    x = torch.rand(3, 1, 32, 32, generator=torch.Generator().manual_seed(0))

    def proba(b):
        with torch.no_grad():
            return logits_to_proba(b.model(x), b.label_space).numpy()

    np.testing.assert_array_equal(proba(loaded), proba(model))
    assert not np.allclose(proba(loaded), proba(load_bundle(out / "bundle")))
    assert (loaded.label_space, loaded.preprocessing, loaded.thresholds) == (
        model.label_space, model.preprocessing, model.thresholds,
    )  # fmt: skip


def test_threshold_reproduces_validation_metrics(trained, learnable):
    """Predicting the validation images with the bundle gives the AUROC recorded at training time."""
    from cxrkit.evaluation import evaluate_predictions

    result, out = trained
    bundle = load_bundle(out / "bundle")
    from cxrkit.data import assign_splits

    table = assign_splits(load_dataset(learnable), val=0.25, test=0.0, seed=0).split("val")
    probs = Engine(bundle, InferenceOptions(precision="fp32")).run_table(table)
    again = evaluate_predictions(bundle.label_space, table.labels, probs, thresholds=result["thresholds"], n_boot=0)
    assert abs(again["auroc"] - result["val_auroc"]) < 1e-6


def test_predict_cli_ranks_and_thresholds(trained, learnable):
    _, out = trained
    r = runner.invoke(app, ["predict", "--model", str(out / "bundle"), str(learnable / "PNEUMONIA"), "--json"])
    assert r.exit_code == 0, r.output
    preds = json.loads(r.stdout)["predictions"]
    assert len(preds) == 24
    first = preds[0]
    assert [c["class"] for c in first["ranked"]] in (["PNEUMONIA", "NORMAL"], ["NORMAL", "PNEUMONIA"])
    assert abs(sum(first["probabilities"].values()) - 1) < 1e-5
    share = np.mean([p["findings"] == ["PNEUMONIA"] for p in preds])
    assert share > 0.8


def test_predictor_bytes_and_bad_input(trained, learnable, tmp_path):
    _, out = trained
    pred = Predictor.load(out / "bundle")
    img = next((learnable / "NORMAL").iterdir())
    r = pred.predict_bytes(img.read_bytes())
    assert set(r["probabilities"]) == {"NORMAL", "PNEUMONIA"}
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"")
    res = runner.invoke(app, ["predict", "--model", str(out / "bundle"), str(bad)])
    assert res.exit_code == 2 and "empty" in res.stderr


def test_evaluate_cli_json_keys_and_report(trained, learnable, tmp_path):
    _, out = trained
    r = runner.invoke(
        app,
        [
            "evaluate",
            "--model",
            str(out / "bundle"),
            str(learnable),
            "--json",
            "--n-boot",
            "50",
            "--out",
            str(tmp_path / "rep"),
        ],
    )
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    for key in ("n", "accuracy", "auroc", "sensitivity", "specificity", "threshold"):
        assert key in res
    assert res["n"] == 48 and res["auroc"] > 0.9
    assert (tmp_path / "rep" / "report.html").is_file()


def test_evaluate_label_map(trained, learnable, tmp_path):
    _, out = trained
    # Rename the classes on disk: the evaluation must be told how they map.
    import shutil

    other = tmp_path / "renamed"
    shutil.copytree(learnable / "NORMAL", other / "healthy")
    shutil.copytree(learnable / "PNEUMONIA", other / "sick")
    r = runner.invoke(app, ["evaluate", "--model", str(out / "bundle"), str(other), "--json", "--n-boot", "0"])
    assert r.exit_code == 2 and "--label-map" in r.stderr
    r = runner.invoke(
        app,
        ["evaluate", "--model", str(out / "bundle"), str(other), "--json", "--n-boot", "0",
         "--label-map", "healthy=NORMAL", "--label-map", "sick=PNEUMONIA"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["n"] == 48


def test_threshold_command_rechooses_on_validation(trained, tmp_path):
    _, out = trained
    before = load_bundle(out / "bundle")
    r = runner.invoke(
        app,
        ["threshold", "--model", str(out / "bundle"), "--method", "sensitivity", "--target-sensitivity", "1.0",
         "--out", str(tmp_path / "b"), "--json"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    after = load_bundle(tmp_path / "b")
    assert after.fingerprint == before.fingerprint  # weights untouched
    assert after.extra["recipe"]["threshold"]["method"] == "sensitivity"
    assert after.metrics["validation"]["sensitivity"] == 1.0
    assert after.thresholds["PNEUMONIA"] == json.loads(r.stdout)["thresholds"][0]
