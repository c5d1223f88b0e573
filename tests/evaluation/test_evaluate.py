"""evaluate_predictions: keys per task, JSON-serialisability, thresholds, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cxrkit.core.errors import ConfigError, DataFormatError
from cxrkit.evaluation import binary_target, class_indices, evaluate_predictions
from cxrkit.evaluation.groups import metrics_by_group

from ._data import multiclass_data, multilabel_data, noisy_binary

BINARY_KEYS = {
    "task",
    "n",
    "accuracy",
    "balanced_accuracy",
    "auroc",
    "auroc_ci",
    "auprc",
    "auprc_ci",
    "sensitivity",
    "specificity",
    "ppv",
    "npv",
    "f1",
    "threshold",
    "threshold_source",
    "confusion",
    "ece",
}
MULTICLASS_KEYS = {"task", "n", "accuracy", "macro_auroc", "per_class", "confusion_matrix", "classes", "ece"}
MULTILABEL_KEYS = {"task", "n", "mean_auroc", "per_label", "ece", "threshold_source"}


def _plain(value) -> bool:
    """True when value holds only JSON's own Python types (no numpy scalars, no NaN)."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    if isinstance(value, float):
        return np.isfinite(value)
    return value is None or type(value) in (int, str, bool)


def _binary_labels(y: np.ndarray) -> np.ndarray:
    return np.stack([1 - y, y], axis=1).astype(np.float32)


def test_binary_result(binary_space, six):
    y, p = six
    r = evaluate_predictions(binary_space, _binary_labels(y), p, n_boot=200)
    assert r.keys() >= BINARY_KEYS
    assert r["task"] == "binary" and r["n"] == 6 and r["positive_class"] == "pneumonia"
    assert r["threshold"] == 0.5 and r["threshold_source"] == "default_0.5"
    assert r["confusion"] == {"tp": 2, "fp": 1, "tn": 2, "fn": 1}
    assert r["confusion_matrix"] == [[2, 1], [1, 2]]
    assert r["auroc"] == pytest.approx(8 / 9)
    assert r["auroc_ci"][0] <= r["auroc"] <= r["auroc_ci"][1]
    assert _plain(r)
    json.dumps(r, allow_nan=False)


def test_binary_threshold_and_unknown_rows(binary_space, six):
    y, p = six
    labels = _binary_labels(y)
    labels = np.vstack([labels, [[np.nan, np.nan]]])
    r = evaluate_predictions(binary_space, labels, np.r_[p, 0.5][:, None], thresholds=[0.35], n_boot=0)
    assert r["n"] == 6 and r["n_unlabelled"] == 1
    assert r["threshold_source"] == "provided" and r["sensitivity"] == 1.0
    assert r["auroc_ci"] is None


def test_multiclass_result(multiclass_space):
    y, p = multiclass_data()
    r = evaluate_predictions(multiclass_space, y, p, n_boot=100)
    assert r.keys() >= MULTICLASS_KEYS
    assert set(r["per_class"]) == {"normal", "bacterial", "viral"}
    assert set(r["per_class"]["viral"]) >= {"precision", "recall", "f1", "support", "auroc"}
    assert np.array(r["confusion_matrix"]).sum() == r["n"] == 90
    assert r["accuracy"] == pytest.approx(float((p.argmax(1) == y.argmax(1)).mean()))
    assert _plain(r)
    json.dumps(r, allow_nan=False)


def test_multiclass_operating_point(multiclass_space):
    """With an operating class, every decision-based figure uses it, and its one-vs-rest figures are reported."""
    y, p = multiclass_data()
    r = evaluate_predictions(multiclass_space, y, p, thresholds={"viral": 0.2}, n_boot=50)
    viral, true = p[:, 2] >= 0.2, y.argmax(1)
    op = r["operating_point"]
    assert op["class"] == "viral" and op["threshold"] == 0.2 and op["n"] == 90
    assert op["sensitivity"] == pytest.approx(viral[true == 2].mean())
    assert op["specificity"] == pytest.approx(1 - viral[true != 2].mean())
    assert op["auroc"] == pytest.approx(r["per_class"]["viral"]["auroc"])
    assert op["sensitivity_ci"] is not None
    cm = np.array(r["confusion_matrix"])
    assert cm[:, 2].sum() == viral.sum()  # the viral column is every image at or above 0.2
    assert r["per_class"]["viral"]["recall"] == pytest.approx(op["sensitivity"])
    assert "operating_point" not in evaluate_predictions(multiclass_space, y, p, n_boot=0)
    by = metrics_by_group(multiclass_space, y, p, ["a"] * 90, {"viral": 0.2}, n_boot=0)
    assert by[0]["per_class"]["viral"]["sensitivity"] == pytest.approx(op["sensitivity"])


def test_multilabel_result(multilabel_space):
    y, p = multilabel_data()
    r = evaluate_predictions(multilabel_space, y, p, thresholds=[0.4, 0.5, 0.6], n_boot=50)
    assert r.keys() >= MULTILABEL_KEYS
    entry = r["per_label"]["effusion"]
    assert {"auroc", "auroc_ci", "threshold", "n_positive", "n", "sensitivity", "specificity"} <= entry.keys()
    assert entry["threshold"] == 0.4 and r["threshold_source"] == "provided"
    assert r["per_label"]["edema"]["auroc"] is None
    assert r["n_unknown_labels"] == int(np.isnan(y).sum())
    assert _plain(r)
    json.dumps(r, allow_nan=False)


def test_reproducible(binary_space):
    y, p = noisy_binary(200)
    a = evaluate_predictions(binary_space, _binary_labels(y), p, n_boot=100, seed=3)
    b = evaluate_predictions(binary_space, _binary_labels(y), p, n_boot=100, seed=3)
    assert a == b


def test_target_helpers():
    assert binary_target([[1, 0], [0, 1], [np.nan, np.nan]]).tolist()[:2] == [0.0, 1.0]
    assert class_indices([[0, 0, 1], [1, 0, 0]]).tolist() == [2, 0]
    with pytest.raises(DataFormatError, match="row 1"):
        class_indices([[0, 0, 1], [1, 1, 0]])
    with pytest.raises(DataFormatError, match="not one-hot"):
        binary_target([[1, 1]])


def test_shape_mismatch(binary_space, multilabel_space, six):
    y, p = six
    with pytest.raises(DataFormatError, match="6 rows but probs has 5"):
        evaluate_predictions(binary_space, _binary_labels(y), p[:5])
    with pytest.raises(DataFormatError, match=r"shape \(N, 3\)"):
        evaluate_predictions(multilabel_space, np.zeros((4, 3)), np.zeros((4, 2)))
    with pytest.raises(DataFormatError, match=r"ONE probability.*probs\[:, 1\]"):
        evaluate_predictions(binary_space, _binary_labels(y), np.stack([1 - p, p], axis=1))


def test_probs_out_of_range(binary_space, multiclass_space, six):
    y, p = six
    with pytest.raises(DataFormatError, match=r"\[0, 1\].*logits"):
        evaluate_predictions(binary_space, _binary_labels(y), p * 4 - 2)
    with pytest.raises(DataFormatError, match="NaN"):
        evaluate_predictions(binary_space, _binary_labels(y), np.r_[p[:5], np.nan])
    with pytest.raises(DataFormatError, match="softmax"):
        evaluate_predictions(multiclass_space, np.eye(3), np.full((3, 3), 0.5))


def test_bad_labels_and_thresholds(binary_space, multiclass_space, multilabel_space, six):
    y, p = six
    with pytest.raises(DataFormatError, match="only 1, 0 or NaN"):
        evaluate_predictions(binary_space, _binary_labels(y) * 2, p)
    with pytest.raises(ConfigError, match="needs 3"):
        evaluate_predictions(multilabel_space, np.zeros((2, 3)), np.zeros((2, 3)), thresholds=[0.5])
    with pytest.raises(ConfigError, match="operating class"):
        evaluate_predictions(multiclass_space, np.eye(3), np.eye(3), thresholds=[0.5])
    with pytest.raises(ConfigError, match=r"1\.5"):
        evaluate_predictions(binary_space, _binary_labels(y), p, thresholds=1.5)
