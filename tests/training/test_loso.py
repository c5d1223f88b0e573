"""Leave-one-source-out validation: folds hold out whole sources, pooled thresholds, the final model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cxrkit.core.errors import ConfigError
from cxrkit.data import load_datasets
from cxrkit.data.splits import source_folds
from cxrkit.models import load_bundle
from cxrkit.training.data_prep import fold_table, split_by_source
from cxrkit.training.recipe import load_recipe
from cxrkit.training.run import train_from_recipe
from tests.conftest import make_learnable_folder

from .test_robust import TINY


@pytest.fixture(scope="module")
def hospitals(tmp_path_factory):
    """Three 'hospitals': A and B with both classes, C with PNEUMONIA only (as a COVID-only source would be)."""
    root = tmp_path_factory.mktemp("hospitals")
    for i, name in enumerate(("hospA", "hospB", "hospC")):
        make_learnable_folder(root / name, n_per_class=10, size=32, seed=i)
    return [str(root / "hospA"), str(root / "hospB"), f"{root / 'hospC'}::PNEUMONIA"]


def test_fold_tables_never_share_a_source(hospitals):
    table = load_datasets(hospitals)
    for fold in source_folds(table):
        ft = fold_table(table, fold)
        train_sources = set(ft.split("train").frame["source"])
        val_sources = set(ft.split("val").frame["source"])
        assert val_sources == {fold.held_out} and fold.held_out not in train_sources
        assert len(ft) == len(table)
    held = split_by_source(table, "hospB")
    assert set(held.split("val").frame["source"]) == {"hospB"}
    with pytest.raises(ConfigError, match=r"'hospX' is not a source.*hospA"):
        split_by_source(table, "hospX")


def test_loso_recipe_keys_are_checked():
    with pytest.raises(ConfigError, match=r"data\.validation must be split or loso"):
        load_recipe(None, ["data.sources=[a]", "data.validation=sources"])
    with pytest.raises(ConfigError, match="Set one"):
        load_recipe(None, ["data.sources=[a]", "data.validation=loso", "data.val_source=a"])


def test_val_source_trains_on_the_other_sources(hospitals, tmp_path):
    r = load_recipe(None, [f"data.sources={json.dumps(hospitals)}", f"out={tmp_path}", *TINY, "data.val_source=hospA"])
    summary = train_from_recipe(r, progress=False)
    assert summary["n_val"] == 20 and summary["n_train"] == 30
    config = json.loads((tmp_path / "bundle" / "config.json").read_text())
    assert config["data_summary"]["split"] == {
        "validation": "held-out source",
        "val_source": "hospA",
        "column": "source",
    }


def test_loso_folds_pooled_thresholds_and_final_model(hospitals, tmp_path):
    r = load_recipe(None, [f"data.sources={json.dumps(hospitals)}", f"out={tmp_path}", *TINY, "data.validation=loso"])
    summary = train_from_recipe(r, progress=False)
    report = json.loads((tmp_path / "loso.json").read_text())
    assert list(report["per_source"]) == ["hospA", "hospB", "hospC"]
    for src, m in report["per_source"].items():
        assert (tmp_path / "folds" / src / "bundle" / "config.json").is_file()
        assert m["n"] == (10 if src == "hospC" else 20)
        assert m["n_train"] == 50 - m["n"]  # every other source trains, nothing of the held-out one
    c = report["per_source"]["hospC"]
    assert c["auroc"] is None and c["monitor"] == "val_loss"  # one class: no AUROC, early stopping on the loss
    assert report["per_source"]["hospA"]["monitor"] == "val_auroc"
    aurocs = [report["per_source"][s]["auroc"] for s in ("hospA", "hospB")]
    assert report["mean_auroc_over_sources"] == pytest.approx(np.mean(aurocs), abs=1e-4)
    assert report["pooled"]["n"] == summary["n_val"] == 50
    assert summary["val_auroc"] == pytest.approx(report["pooled"]["auroc"])  # what `cxr train` prints
    assert "| hospC | 10 | 40 | - |" in (tmp_path / "loso.md").read_text()
    # the final model: every source, the pooled out-of-source thresholds, LOSO metrics in its bundle
    bundle = load_bundle(summary["bundle"])
    assert bundle.thresholds["PNEUMONIA"] == pytest.approx(report["thresholds"][0], abs=1e-6)
    assert bundle.metrics["leave_source_out"]["per_source"]["hospB"]["auroc"] == report["per_source"]["hospB"]["auroc"]
    assert bundle.extra["validation"] == "leave-one-source-out"
    card = (bundle.path / "MODEL_CARD.md").read_text()
    assert "### leave_source_out" in card and "| hospC |" in card  # a row per held-out source
    assert summary["final"]["n_train"] == 50 and summary["final"]["n_val"] == 0
    assert bundle.extra["epochs_run"] == report["final"]["epochs_run"] == bundle.extra["loso"]["final_epochs"]


def test_loso_multiclass_operating_point_is_chosen_out_of_source(tmp_path):
    """A multiclass recipe's operating class gets its threshold from the pooled out-of-source predictions, and the
    final bundle decides by it (recipes/covid3.yaml's COVID-19 at sensitivity 0.85)."""
    sources = []
    for i, name in enumerate(("hospA", "hospB", "hospC")):
        root = make_learnable_folder(tmp_path / "data" / name, n_per_class=8, size=32, seed=i)
        (root / "COVID-19").mkdir()
        for p in sorted((root / "PNEUMONIA").iterdir())[:4]:  # moved: other patients of a third class
            p.rename(root / "COVID-19" / p.name.replace("person", "person9"))
        sources.append(str(root))
    operating = [
        "threshold.method=sensitivity",
        "threshold.target_sensitivity=0.8",
        "threshold.operating_class=COVID-19",
    ]
    r = load_recipe(None, [f"data.sources={json.dumps(sources)}", f"out={tmp_path / 'run'}", *TINY,
                           "data.validation=loso", *operating])  # fmt: skip
    summary = train_from_recipe(r, progress=False)
    report = json.loads((tmp_path / "run" / "loso.json").read_text())
    (t,) = report["thresholds"].values()
    assert list(report["thresholds"]) == ["COVID-19"]
    assert report["pooled"]["operating_point"]["sensitivity"] >= 0.8  # on the out-of-source scores it was chosen on
    bundle = load_bundle(summary["bundle"])
    assert bundle.thresholds == {"COVID-19": pytest.approx(t)}
    assert "**COVID-19** whenever its probability is at least" in (bundle.path / "MODEL_CARD.md").read_text()


def test_loso_runs_in_one_process():
    with pytest.raises(ConfigError, match=r"train\.devices=1"):
        load_recipe(None, ["data.sources=[a]", "data.validation=loso", "train.devices=2"])


def test_source_balanced_sampling(hospitals, tmp_path):
    """Every source, and every class within it, is drawn equally often (data.balance: source)."""
    from cxrkit.training.datamodule import source_balanced_weights

    table = load_datasets([*hospitals[:2], hospitals[0].replace("hospA", "hospC") + "::NORMAL"])
    table = table.subset(np.r_[0:20, 20:25, 40:50])  # hospA 20 (10/10), hospB 5 (NORMAL only), hospC 10
    w = source_balanced_weights(table)
    df = table.frame.assign(w=w, cls=table.class_index())
    per_source = df.groupby("source")["w"].sum()
    np.testing.assert_allclose(per_source.to_numpy(), 1 / 3)
    cells = df[df["source"] == "hospA"].groupby("cls")["w"].sum()
    np.testing.assert_allclose(cells.to_numpy(), 1 / 6)
    r = load_recipe(None, [f"data.sources={json.dumps(hospitals)}", f"out={tmp_path}", *TINY, "data.balance=source"])
    assert train_from_recipe(r, progress=False)["epochs_run"] == 2


def test_fold_metrics_break_down_by_finding():
    """A multi-label fold reports AUROC per finding, and loso.md tabulates findings x held-out sources."""
    from cxrkit.core.task import LabelSpace, TaskType
    from cxrkit.training.loso import _by_output_markdown, _fold_metrics

    space = LabelSpace(TaskType.MULTILABEL, ("Pneumonia", "Edema"))
    rng = np.random.default_rng(0)
    labels = np.stack([np.repeat([0.0, 1.0], 20), np.full(40, np.nan)], axis=1)  # Edema unlabelled here
    probs = np.clip(labels[:, :1] * 0.6 + rng.uniform(0, 0.5, (40, 1)), 0, 1).repeat(2, axis=1)
    m = _fold_metrics(space, labels, probs, [0.5, 0.5])
    assert m["auroc_by_output"]["Pneumonia"]["n_positive"] == 20
    assert m["auroc_by_output"]["Pneumonia"]["auroc"] > 0.8
    assert m["auroc_by_output"]["Edema"]["auroc"] is None
    table = "\n".join(_by_output_markdown({"hospA": m}))
    auroc = m["auroc_by_output"]["Pneumonia"]["auroc"]
    assert f"| Pneumonia | {auroc:.3f} (20) |" in table and "| Edema | - |" in table
