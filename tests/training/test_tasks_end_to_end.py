"""Multiclass and multi-label: train a tiny model, evaluate it through the CLI, check the JSON keys."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from typer.testing import CliRunner

from cxrkit.cli import app
from cxrkit.core.errors import ConfigError, UnknownNameError
from cxrkit.models import load_bundle
from cxrkit.serving.predictor import Predictor
from cxrkit.training.recipe import load_recipe
from cxrkit.training.rethreshold import rethreshold_bundle
from cxrkit.training.run import train_from_recipe
from tests.conftest import TINY_CNN

runner = CliRunner()
COMMON = [*TINY_CNN, "data.val=0.3", "augment.enabled=false", "train.epochs=3"]


@pytest.fixture(scope="module")
def three_class(learnable, tmp_path_factory):
    root = tmp_path_factory.mktemp("three")
    shutil.copytree(learnable / "NORMAL", root / "NORMAL")
    shutil.copytree(learnable / "PNEUMONIA", root / "PNEUMONIA")
    # A third class: the pneumonia images renamed as other patients (the model cannot separate it well).
    (root / "COVID-19").mkdir()
    for p in sorted((learnable / "PNEUMONIA").iterdir())[:12]:
        shutil.copy(p, root / "COVID-19" / p.name.replace("person", "person7"))
    return root


def test_multiclass_train_and_evaluate(three_class, tmp_path):
    """A multiclass recipe with an operating class: COVID-19 gets a threshold reaching sensitivity 0.9 on
    validation, the bundle keeps it, and evaluation, prediction and re-thresholding decide by it."""
    operating = [
        "threshold.method=sensitivity",
        "threshold.target_sensitivity=0.9",
        "threshold.operating_class=covid-19",
    ]
    recipe = load_recipe(None, [f"data.sources=[{three_class}]", f"out={tmp_path}", *COMMON, *operating])
    result = train_from_recipe(recipe, progress=False)
    (t,) = result["thresholds"].values()
    assert list(result["thresholds"]) == ["COVID-19"] and 0 < t < 1
    assert result["val"]["operating_point"]["sensitivity"] >= 0.9
    bundle = load_bundle(tmp_path / "bundle")
    assert bundle.thresholds == {"COVID-19": t}
    r = runner.invoke(
        app, ["evaluate", "--model", str(tmp_path / "bundle"), str(three_class), "--json", "--n-boot", "20"]
    )
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    for key in ("n", "accuracy", "macro_auroc", "per_class", "confusion_matrix", "operating_point"):
        assert key in res
    assert set(res["per_class"]) == {"NORMAL", "PNEUMONIA", "COVID-19"}
    assert res["per_class"]["NORMAL"]["auroc"] > 0.9  # the dark-centre class is easy
    assert res["operating_point"]["class"] == "COVID-19" and res["operating_point"]["threshold"] == t
    # the text output and the report say the rule and its one-vs-rest figures
    r = runner.invoke(app, ["evaluate", "--model", str(tmp_path / "bundle"), str(three_class), "--n-boot", "20",
                            "--out", str(tmp_path / "eval")])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert f"COVID-19 at >= {t:.4g}, else the most probable other class" in r.stdout
    sens = f"COVID-19 sensitivity {res['operating_point']['sensitivity']:.3f}"
    assert (
        sens in r.stdout
        and sens.replace(" sensitivity ", " sensitivity | ") in (tmp_path / "eval" / "report.md").read_text()
    )
    predictor = Predictor.from_bundle(bundle, warmup=False)
    calls = predictor.predict_paths([three_class / "COVID-19"])
    assert all((c["findings"] == ["COVID-19"]) == (c["probabilities"]["COVID-19"] >= t) for c in calls)
    r = runner.invoke(app, ["predict", "--model", str(tmp_path / "bundle"), str(three_class / "COVID-19")])
    assert r.exit_code == 0, r.output
    called = [line for line in r.stdout.splitlines() if ": COVID-19" in line]
    assert len(called) == sum(c["findings"] == ["COVID-19"] for c in calls) > 0
    assert all(f">= {t:.3g}, its operating point)" in line for line in called)
    # re-thresholding keeps the bundle's operating class unless told otherwise
    again = rethreshold_bundle(tmp_path / "bundle", method="youden", out=tmp_path / "youden")
    assert list(again["thresholds"]) == ["COVID-19"]


def test_operating_class_fails_before_training(learnable, three_class, tmp_path):
    binary = load_recipe(None, [f"data.sources=[{learnable}]", f"out={tmp_path}", *COMMON,
                                "threshold.operating_class=PNEUMONIA"])  # fmt: skip
    with pytest.raises(ConfigError, match="multiclass"):
        train_from_recipe(binary, progress=False)
    unknown = load_recipe(None, [f"data.sources=[{three_class}]", f"out={tmp_path}", *COMMON,
                                 "threshold.operating_class=viral"])  # fmt: skip
    with pytest.raises(UnknownNameError, match="COVID-19"):
        train_from_recipe(unknown, progress=False)
    assert not (tmp_path / "bundle").exists()


def test_multilabel_train_and_evaluate(learnable, tmp_path):
    rows = []
    for cls in ("NORMAL", "PNEUMONIA"):
        for i, p in enumerate(sorted((learnable / cls).iterdir())):
            rows.append({"path": str(p), "patient_id": f"{cls}{i // 2}", "Opacity": int(cls == "PNEUMONIA"),
                         "Device": float("nan") if i % 5 == 0 else i % 2})  # fmt: skip
    csv = tmp_path / "ml.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    result = train_from_recipe(
        load_recipe(None, [f"data.sources=[{csv}]", f"out={tmp_path / 'run'}", *COMMON]), progress=False
    )
    assert len(result["thresholds"]) == 2
    r = runner.invoke(
        app, ["evaluate", "--model", str(tmp_path / "run" / "bundle"), str(csv), "--json", "--n-boot", "20"]
    )
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert set(res["per_label"]) == {"Opacity", "Device"} and "mean_auroc" in res
    assert res["per_label"]["Opacity"]["auroc"] > 0.9
    assert res["n_unknown_labels"] == 10  # the NaN entries stayed unknown
