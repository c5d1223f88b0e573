"""Binary metrics against hand-computed values, and the batched metrics against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from cxrkit.core.errors import ConfigError, DataFormatError, UnknownNameError
from cxrkit.evaluation import accuracy_vs_threshold, auprc, auroc, binary_metrics, get_metric, threshold_metric
from cxrkit.evaluation.metrics import auprc_batched, auroc_batched


def test_binary_metrics_by_hand(six):
    y, p = six
    # threshold 0.5: predicted positive = [0.9, 0.8, 0.6] -> tp 2, fp 1, fn 1 (0.4), tn 2
    m = binary_metrics(y, p, 0.5)
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (2, 1, 2, 1)
    for key in ("sensitivity", "specificity", "ppv", "npv", "accuracy", "f1", "balanced_accuracy"):
        assert m[key] == pytest.approx(2 / 3), key
    # 8 of the 9 positive/negative pairs are ordered correctly (0.4 < 0.6 is the one miss)
    assert m["auroc"] == pytest.approx(8 / 9)
    # precision at each positive, ranked: 1/1, 2/2, 3/4
    assert m["auprc"] == pytest.approx((1 + 1 + 0.75) / 3)
    assert m["n"] == 6 and m["n_positive"] == 3 and m["prevalence"] == pytest.approx(0.5)


def test_binary_metrics_asymmetric_threshold(six):
    y, p = six
    # threshold 0.35: predicted positive = [0.9, 0.8, 0.4, 0.6] -> tp 3, fp 1, tn 2, fn 0
    m = binary_metrics(y, p, 0.35)
    assert m["sensitivity"] == pytest.approx(1.0)
    assert m["specificity"] == pytest.approx(2 / 3)
    assert m["ppv"] == pytest.approx(3 / 4)
    assert m["npv"] == pytest.approx(1.0)
    assert m["accuracy"] == pytest.approx(5 / 6)
    assert m["balanced_accuracy"] == pytest.approx(5 / 6)
    assert m["f1"] == pytest.approx(6 / 7)


def test_threshold_is_inclusive():
    m = binary_metrics([1, 0], [0.5, 0.49], 0.5)
    assert (m["tp"], m["tn"]) == (1, 1)


def test_zero_division_gives_none():
    m = binary_metrics([1, 1, 0], [0.1, 0.2, 0.3], threshold=0.9)  # nothing predicted positive
    assert m["ppv"] is None
    assert m["sensitivity"] == 0.0 and m["specificity"] == 1.0
    single = binary_metrics([0, 0, 0], [0.1, 0.7, 0.3])
    assert single["auroc"] is None and single["auprc"] is None and single["sensitivity"] is None


def test_metric_objects_match_sklearn_with_ties_and_masks():
    rng = np.random.default_rng(3)
    for _ in range(10):
        y = rng.integers(0, 2, 60).astype(float)
        p = np.round(rng.random(60), 1)  # many ties
        assert auroc(y, p) == pytest.approx(roc_auc_score(y, p))
        assert auprc(y, p) == pytest.approx(average_precision_score(y, p))
        mask = rng.random(60) > 0.3
        assert auroc_batched(y[None], p[None], mask[None])[0] == pytest.approx(roc_auc_score(y[mask], p[mask]))
        assert auprc_batched(y[None], p[None], mask[None])[0] == pytest.approx(
            average_precision_score(y[mask], p[mask])
        )


def test_named_metrics(six):
    y, p = six
    assert get_metric("auroc") is auroc
    assert threshold_metric("specificity", 0.35)(y, p) == pytest.approx(2 / 3)
    with pytest.raises(UnknownNameError, match="sensitivty"):
        get_metric("sensitivty")


def test_accuracy_vs_threshold_matches_direct_count(six):
    y, p = six
    ts = [0.0, 0.35, 0.5, 0.85, 1.0]
    curve = accuracy_vs_threshold(y, p, ts)
    expected = [float(((p >= t) == (y == 1)).mean()) for t in ts]
    assert curve["accuracy"] == pytest.approx(expected)
    assert curve["accuracy"][2] == pytest.approx(4 / 6)
    ym = np.array([[1, np.nan], [0, 1]])
    pm = np.array([[0.9, 0.0], [0.2, 0.8]])
    assert accuracy_vs_threshold(ym, pm, [0.5])["accuracy"] == [1.0]  # the NaN entry is ignored


@pytest.mark.parametrize(
    ("y", "p", "match"),
    [
        ([1, 0, 1], [0.2, 0.3], "equal length"),
        ([1, 0], [0.2, 1.7], "sigmoid"),
        ([1, np.nan], [0.2, 0.3], "NaN"),
        ([2, 0], [0.2, 0.3], "0 and 1"),
    ],
)
def test_bad_arrays(y, p, match):
    with pytest.raises(DataFormatError, match=match):
        binary_metrics(y, p)


def test_bad_threshold(six):
    with pytest.raises(ConfigError, match=r"1\.5"):
        binary_metrics(*six, threshold=1.5)
