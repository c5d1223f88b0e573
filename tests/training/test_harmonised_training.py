"""A multi-label model on harmonised sources (the `all` recipe's path): masked loss, recorded split, evaluation."""

from __future__ import annotations

import numpy as np

from cxrkit.data import VOCABULARY, load_datasets, source_folds
from cxrkit.evaluation.run import evaluate_model
from cxrkit.models import load_bundle
from cxrkit.training.recipe import load_recipe
from cxrkit.training.run import train_from_recipe
from tests.conftest import TINY_CNN, make_learnable_folder
from tests.data.conftest import make_nih_demo, make_radiography_db


def test_train_and_evaluate_on_harmonised_sources(tmp_path):
    kaggle = make_learnable_folder(tmp_path / "kaggle-pneumonia", n_per_class=12)
    db = make_radiography_db(tmp_path / "db", with_sheets=False, with_masks=False)
    nih = make_nih_demo(tmp_path / "nih")
    sources = [str(kaggle), str(db), str(nih)]
    recipe = load_recipe(
        None,
        [
            f"data.sources=[{', '.join(sources)}]",
            "data.harmonise=true",
            f"out={tmp_path / 'run'}",
            *TINY_CNN,
            "data.val=0.3",
            "augment.enabled=false",
            "train.epochs=1",
        ],
    )
    result = train_from_recipe(recipe, progress=False)
    bundle = load_bundle(result["bundle"])
    assert bundle.label_space.task.value == "multilabel"
    # Findings no source labels positive are dropped; what remains keeps the vocabulary's order.
    assert list(bundle.classes) == [c for c in VOCABULARY if c in bundle.classes]
    assert {"Pneumonia", "COVID-19", "No Finding", "Lung Opacity"} <= set(bundle.classes)
    assert bundle.images["n_train"] + bundle.images["n_val"] == 24 + 11 + 5
    # Leave-source-out folds of the same harmonised data: each source held out once.
    table = load_datasets(sources, harmonise=True)
    assert {f.held_out for f in source_folds(table)} == {
        "kaggle-pneumonia", "nih-chestxray14", "covid19-radiography-db/COVID", "covid19-radiography-db/Normal",
        "covid19-radiography-db/Lung_Opacity", "covid19-radiography-db/Viral Pneumonia",
    }  # fmt: skip
    # Evaluating it on a plain folder dataset harmonises first: NORMAL means 'No Finding', 0 for every finding.
    res = evaluate_model(result["bundle"], [str(kaggle)], n_boot=0, by=["source"])
    per = res["per_label"]
    assert per["Pneumonia"]["n_positive"] == 12 and per["No Finding"]["n_positive"] == 12
    assert res["overlap_with_training"]["count"] == 24
    assert np.isfinite(res["mean_auroc"])
