"""Threshold choice: Youden, sensitivity target, and per-task lists."""

from __future__ import annotations

import numpy as np
import pytest

from cxrkit.core.errors import ConfigError, DataFormatError, UnknownNameError
from cxrkit.evaluation import binary_metrics, choose_thresholds, threshold_for_sensitivity, youden_threshold

from ._data import multiclass_data, multilabel_data


def test_youden_on_known_scores(six):
    y, p = six
    # J: t=0.9 -> 1/3, t=0.8 -> 2/3, t=0.6 -> 1/3, t=0.4 -> 2/3, t=0.3 -> 1/3; ties go to the higher threshold
    assert youden_threshold(y, p) == pytest.approx(0.8)


def test_youden_perfect_separation():
    assert youden_threshold([0, 0, 1, 1], [0.1, 0.3, 0.7, 0.9]) == pytest.approx(0.7)


@pytest.mark.parametrize(("target", "expected"), [(0.3, 0.9), (0.6, 0.8), (2 / 3, 0.8), (0.9, 0.4), (1.0, 0.4)])
def test_threshold_for_sensitivity(six, target, expected):
    y, p = six
    t = threshold_for_sensitivity(y, p, target)
    assert t == pytest.approx(expected)
    assert binary_metrics(y, p, t)["sensitivity"] >= target - 1e-12
    # any higher threshold (just above t) misses the target: t is the highest that reaches it
    assert binary_metrics(y, p, min(t + 1e-9, 1.0))["sensitivity"] < target


def test_threshold_for_sensitivity_bad_target(six):
    with pytest.raises(ConfigError, match=r"1\.2"):
        threshold_for_sensitivity(*six, target=1.2)


def test_choose_thresholds_binary(binary_space, six):
    y, p = six
    y_true = np.stack([1 - y, y], axis=1)
    assert choose_thresholds(binary_space, y_true, p) == [pytest.approx(0.8)]
    assert choose_thresholds(binary_space, y_true, p[:, None], method="sensitivity", target_sensitivity=1.0) == [
        pytest.approx(0.4)
    ]


def test_choose_thresholds_multilabel_masks_nan_and_falls_back(multilabel_space):
    y, p = multilabel_data()
    ts = choose_thresholds(multilabel_space, y, p)
    assert len(ts) == 3
    known = ~np.isnan(y[:, 0])
    assert ts[0] == pytest.approx(youden_threshold(y[known, 0], p[known, 0]))
    assert ts[2] == 0.5  # column 2 has no positive: default, with a warning


def test_choose_thresholds_multiclass_is_empty(multiclass_space):
    y, p = multiclass_data()
    assert choose_thresholds(multiclass_space, y, p) == {}


def test_choose_thresholds_multiclass_operating_class(multiclass_space):
    """The operating class's threshold is chosen one-vs-rest on its own probability column."""
    y, p = multiclass_data()
    got = choose_thresholds(multiclass_space, y, p, "sensitivity", 0.85, operating_class="VIRAL")
    assert list(got) == ["viral"]  # the model's spelling
    assert got["viral"] == threshold_for_sensitivity(y[:, 2], p[:, 2], 0.85)
    assert (p[y[:, 2] == 1, 2] >= got["viral"]).mean() >= 0.85
    youden = choose_thresholds(multiclass_space, y, p, operating_class="viral")
    assert youden == {"viral": pytest.approx(youden_threshold(y[:, 2], p[:, 2]))}


def test_operating_class_errors(binary_space, multiclass_space, six):
    y, p = six
    with pytest.raises(ConfigError, match="multiclass"):
        choose_thresholds(binary_space, np.stack([1 - y, y], axis=1), p, operating_class="pos")
    ym, pm = multiclass_data()
    with pytest.raises(UnknownNameError, match="viral"):
        choose_thresholds(multiclass_space, ym, pm, operating_class="covid")
    none_viral = ym[ym[:, 2] == 0]
    with pytest.raises(DataFormatError, match="both classes"):
        choose_thresholds(multiclass_space, none_viral, pm[ym[:, 2] == 0], operating_class="viral")


def test_choose_thresholds_errors(binary_space, six):
    y, p = six
    y_true = np.stack([1 - y, y], axis=1)
    with pytest.raises(UnknownNameError, match="youdn"):
        choose_thresholds(binary_space, y_true, p, method="youdn")
    with pytest.raises(ConfigError, match="target_sensitivity"):
        choose_thresholds(binary_space, y_true, p, method="sensitivity")
    with pytest.raises(DataFormatError, match="both classes"):
        choose_thresholds(binary_space, np.tile([1.0, 0.0], (6, 1)), p)


def test_youden_band_takes_centre_of_flat_optimum():
    import numpy as np

    from cxrkit.evaluation import youden_band_threshold, youden_threshold

    # Negatives below 0.2, positives above 0.8: every threshold in (0.2, 0.8] is perfect (J = 1).
    y = np.array([0] * 5 + [1] * 5)
    p = np.array([0.05, 0.1, 0.12, 0.15, 0.2, 0.8, 0.85, 0.9, 0.95, 0.99])
    assert youden_threshold(y, p) == 0.8  # the edge of the plateau
    band = youden_band_threshold(y, p, band=0.0)
    assert band == 0.8  # only one score sits on the plateau itself
    # With a tolerance, near-optimal thresholds on both sides count and the median moves inward.
    y2 = np.array([0] * 100 + [1] * 100)
    rng = np.random.default_rng(0)
    p2 = np.concatenate([rng.uniform(0.0, 0.45, 100), rng.uniform(0.3, 1.0, 100)])
    t_edge, t_band = youden_threshold(y2, p2), youden_band_threshold(y2, p2, band=0.05)
    assert 0.3 <= t_band <= 0.6 and t_band != t_edge
