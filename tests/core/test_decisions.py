"""The one decision rule (cxrkit.core.decisions): arg-max, a multiclass operating class, per-output thresholds."""

from __future__ import annotations

import numpy as np
import pytest

from cxrkit.core.decisions import decide, decision_matrix, multiclass_thresholds, operating_point
from cxrkit.core.errors import ConfigError
from cxrkit.core.task import LabelSpace, TaskType

THREE = LabelSpace(TaskType.MULTICLASS, ("NORMAL", "PNEUMONIA", "COVID-19"))
BINARY = LabelSpace(TaskType.BINARY, ("NORMAL", "PNEUMONIA"))
LABELS = LabelSpace(TaskType.MULTILABEL, ("effusion", "nodule"))
P = np.array([[0.60, 0.15, 0.25], [0.20, 0.50, 0.30], [0.10, 0.20, 0.70], [0.45, 0.40, 0.15]])


def test_multiclass_without_operating_class_is_the_argmax():
    np.testing.assert_array_equal(decide(THREE, P), [0, 1, 2, 0])
    # bundles written before operating points listed every class at 0.5: the same arg-max
    legacy = dict.fromkeys(THREE.classes, 0.5)
    assert multiclass_thresholds(legacy, THREE) == {}
    np.testing.assert_array_equal(decide(THREE, P, legacy), [0, 1, 2, 0])


def test_operating_class_is_called_at_its_threshold_else_the_best_other_class():
    t = {"covid-19": 0.25}  # matched case-insensitively, stored in the model's spelling
    assert multiclass_thresholds(t, THREE) == {"COVID-19": 0.25}
    assert operating_point(THREE, t) == (2, 0.25)
    # row 0: COVID-19 at 0.25 reaches its threshold although NORMAL is more probable; row 1: 0.30 too;
    # row 3: 0.15 does not, and the most probable other class (NORMAL) is called
    np.testing.assert_array_equal(decide(THREE, P, t), [2, 2, 2, 0])
    # a threshold above 0.5 makes the class rarer than its arg-max: row 2's 0.70 < 0.8 goes to PNEUMONIA
    np.testing.assert_array_equal(decide(THREE, P, {"COVID-19": 0.8}), [0, 1, 1, 0])


def test_operating_point_sensitivity_is_its_one_vs_rest_sensitivity():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(500, 3))
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    for t in (0.1, 0.3, 0.6):
        called = decide(THREE, p, {"COVID-19": t}) == 2
        np.testing.assert_array_equal(called, p[:, 2] >= t)


def test_binary_and_multilabel_use_their_thresholds():
    np.testing.assert_array_equal(decide(BINARY, np.array([0.2, 0.35, 0.9]), {"PNEUMONIA": 0.3}), [0, 1, 1])
    np.testing.assert_array_equal(decide(BINARY, np.array([[0.8, 0.2], [0.6, 0.4]])), [0, 0])
    got = decide(LABELS, np.array([[0.2, 0.9], [0.6, 0.1]]), {"effusion": 0.1})
    np.testing.assert_array_equal(got, [[True, True], [True, False]])  # nodule at the default 0.5
    assert operating_point(BINARY, {"PNEUMONIA": 0.3}) is None


def test_decision_matrix_is_one_hot_for_exclusive_tasks():
    m = decision_matrix(THREE, P, {"COVID-19": 0.25})
    assert m.dtype == bool and m.shape == (4, 3)
    np.testing.assert_array_equal(m.sum(1), 1)
    assert decision_matrix(BINARY, np.array([0.2, 0.9])).tolist() == [[True, False], [False, True]]


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ({"NORMAL": 0.3, "COVID-19": 0.2}, "at most one threshold"),
        ({"COVID-19": 1.5}, "probabilities"),
        ({"COVID-19": float("nan")}, "probabilities"),
    ],
)
def test_bad_multiclass_thresholds(raw, match):
    with pytest.raises(ConfigError, match=match):
        multiclass_thresholds(raw, THREE)
