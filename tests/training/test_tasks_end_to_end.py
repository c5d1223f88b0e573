"""Multiclass and multi-label: train a tiny model, evaluate it through the CLI, check the JSON keys."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from typer.testing import CliRunner

from cxrkit.cli import app
from cxrkit.training.recipe import load_recipe
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
    result = train_from_recipe(
        load_recipe(None, [f"data.sources=[{three_class}]", f"out={tmp_path}", *COMMON]), progress=False
    )
    assert result["thresholds"] == []  # argmax: no threshold
    r = runner.invoke(
        app, ["evaluate", "--model", str(tmp_path / "bundle"), str(three_class), "--json", "--n-boot", "20"]
    )
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    for key in ("n", "accuracy", "macro_auroc", "per_class", "confusion_matrix"):
        assert key in res
    assert set(res["per_class"]) == {"NORMAL", "PNEUMONIA", "COVID-19"}
    assert res["per_class"]["NORMAL"]["auroc"] > 0.9  # the dark-centre class is easy


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
