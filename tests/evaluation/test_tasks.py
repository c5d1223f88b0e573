"""Multiclass report against a hand-made confusion matrix; multilabel NaN masking."""

from __future__ import annotations

import numpy as np
import pytest

from cxrkit.evaluation import auroc, multiclass_metrics, multilabel_metrics, report_from_confusion

from ._data import multilabel_data

CLASSES = ("normal", "bacterial", "viral")


def _probs_for(pred: list[int]) -> np.ndarray:
    p = np.full((len(pred), 3), 0.1)
    p[np.arange(len(pred)), pred] = 0.8
    return p


def test_multiclass_against_hand_confusion():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
    pred = [0, 0, 0, 1, 1, 1, 2, 2, 2, 0]
    #            predicted: normal bacterial viral
    expected = [
        [3, 1, 0],  # true normal
        [0, 2, 1],  # true bacterial
        [1, 0, 2],
    ]  # true viral
    m = multiclass_metrics(y, _probs_for(pred), CLASSES, n_boot=0)
    assert m["confusion_matrix"] == expected
    assert m["accuracy"] == pytest.approx(7 / 10)
    pc = m["per_class"]
    assert pc["normal"]["precision"] == pytest.approx(3 / 4)
    assert pc["normal"]["recall"] == pytest.approx(3 / 4)
    assert pc["bacterial"]["precision"] == pytest.approx(2 / 3)
    assert pc["bacterial"]["recall"] == pytest.approx(2 / 3)
    assert pc["viral"]["precision"] == pytest.approx(2 / 3)
    assert pc["viral"]["f1"] == pytest.approx(2 / 3)
    assert [pc[c]["support"] for c in CLASSES] == [4, 3, 3]
    assert m["balanced_accuracy"] == pytest.approx((3 / 4 + 2 / 3 + 2 / 3) / 3)
    # one-vs-rest AUROC of class 0 from its own column
    p = _probs_for(pred)
    assert pc["normal"]["auroc"] == pytest.approx(auroc((y == 0).astype(float), p[:, 0]))
    assert m["macro_auroc"] == pytest.approx(np.mean([pc[c]["auroc"] for c in CLASSES]))
    assert m["accuracy_ci"] is None


def test_multiclass_bootstrap_intervals():
    y = np.repeat([0, 1, 2], 20)
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(60, 3)) + 2 * np.eye(3)[y]
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    m = multiclass_metrics(y, p, CLASSES, n_boot=200)
    lo, hi = m["macro_auroc_ci"]
    assert lo <= m["macro_auroc"] <= hi
    lo, hi = m["per_class"]["viral"]["auroc_ci"]
    assert lo <= m["per_class"]["viral"]["auroc"] <= hi


def test_class_never_predicted_has_undefined_precision():
    r = report_from_confusion([[2, 0], [1, 0]], ("a", "b"))
    assert r["per_class"]["b"]["precision"] is None
    assert r["per_class"]["b"]["recall"] == 0.0
    assert r["macro_precision"] == pytest.approx(2 / 3)  # over the defined class only


def test_multilabel_nan_is_masked_per_label():
    y, p = multilabel_data()
    m = multilabel_metrics(y, p, ("effusion", "nodule", "edema"), n_boot=100)
    known = ~np.isnan(y[:, 0])
    assert m["per_label"]["effusion"]["auroc"] == pytest.approx(auroc(y[known, 0], p[known, 0]))
    assert m["per_label"]["effusion"]["n"] == int(known.sum())
    # scores of rows whose label is unknown must not matter
    p2 = p.copy()
    p2[~known, 0] = 1.0 - p2[~known, 0]
    m2 = multilabel_metrics(y, p2, ("effusion", "nodule", "edema"), n_boot=0)
    assert m2["per_label"]["effusion"]["auroc"] == pytest.approx(m["per_label"]["effusion"]["auroc"])
    # the all-negative label is skipped with a reason, and left out of the mean
    edema = m["per_label"]["edema"]
    assert edema["auroc"] is None and "one class" in edema["reason"] and edema["auroc_ci"] is None
    assert m["n_labels_scored"] == 2
    expected_mean = np.mean([m["per_label"][c]["auroc"] for c in ("effusion", "nodule")])
    assert m["mean_auroc"] == pytest.approx(expected_mean)
    lo, hi = m["mean_auroc_ci"]
    assert lo <= m["mean_auroc"] <= hi
    assert m["per_label"]["nodule"]["threshold"] == 0.5


def test_multilabel_thresholds_are_used():
    y, p = multilabel_data()
    m = multilabel_metrics(y, p, ("effusion", "nodule", "edema"), thresholds=[0.0, 1.0, 0.5], n_boot=0)
    assert m["per_label"]["effusion"]["sensitivity"] == 1.0 and m["per_label"]["effusion"]["specificity"] == 0.0
    assert m["per_label"]["nodule"]["threshold"] == 1.0
