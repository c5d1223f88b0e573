"""ECE and reliability data."""

from __future__ import annotations

import numpy as np
import pytest

from cxrkit.core.errors import ConfigError
from cxrkit.evaluation import calibration_pairs, calibration_report, expected_calibration_error, reliability_data

from ._data import multiclass_data


def test_perfectly_calibrated_is_zero():
    # each confidence level holds exactly the matching share of positives
    conf = np.repeat([0.1, 0.3, 0.5, 0.7, 0.9], 10)
    outcome = np.concatenate([np.r_[np.ones(k), np.zeros(10 - k)] for k in (1, 3, 5, 7, 9)])
    assert expected_calibration_error(conf, outcome) == pytest.approx(0.0, abs=1e-12)


def test_random_calibrated_is_small_and_overconfident_is_large():
    rng = np.random.default_rng(0)
    conf = rng.random(20000)
    outcome = (rng.random(20000) < conf).astype(float)
    assert expected_calibration_error(conf, outcome) < 0.02
    # always 95% sure, right half the time: the gap is 0.45 everywhere
    assert expected_calibration_error(np.full(100, 0.95), np.r_[np.ones(50), np.zeros(50)]) == pytest.approx(0.45)


def test_reliability_bins():
    data = reliability_data([0.0, 0.05, 0.5, 1.0], [0, 1, 1, 1], n_bins=10)
    assert data["bin_count"][0] == 2 and data["bin_count"][4] == 1 and data["bin_count"][9] == 1
    assert data["bin_confidence"][0] == pytest.approx(0.025)
    assert data["bin_accuracy"][0] == pytest.approx(0.5)
    assert data["bin_accuracy"][1] is None  # empty bin
    assert sum(data["bin_count"]) == data["n"] == 4


def test_task_pairs(binary_space, multiclass_space, multilabel_space):
    conf, out = calibration_pairs(binary_space, [[0, 1], [1, 0], [np.nan, np.nan]], [0.8, 0.3, 0.5])
    assert conf.tolist() == [0.8, 0.3] and out.tolist() == [1.0, 0.0]  # positive prob, unknown row dropped
    y, p = multiclass_data(30)
    conf, out = calibration_pairs(multiclass_space, y, p)
    assert np.allclose(conf, p.max(axis=1)) and np.array_equal(out, (p.argmax(1) == y.argmax(1)).astype(float))
    conf, out = calibration_pairs(multilabel_space, [[1, np.nan, 0]], [[0.7, 0.2, 0.1]])
    assert conf.tolist() == [0.7, 0.1] and out.tolist() == [1.0, 0.0]
    assert calibration_report(multilabel_space, [[1, np.nan, 0]], [[0.7, 0.2, 0.1]])["n"] == 2


def test_bad_bins():
    with pytest.raises(ConfigError, match="n_bins"):
        reliability_data([0.5], [1], n_bins=0)
