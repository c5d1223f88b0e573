"""Bootstrap confidence intervals: coverage of the estimate, narrowing with n, speed, reproducibility."""

from __future__ import annotations

import time

import numpy as np
import pytest

from cxrkit.core.errors import ConfigError
from cxrkit.evaluation import auroc, bootstrap_ci, threshold_metric
from cxrkit.evaluation.bootstrap import bootstrap_samples

from ._data import noisy_binary


def test_ci_contains_estimate_and_narrows_with_n():
    y_small, p_small = noisy_binary(150, seed=1)
    y_big, p_big = noisy_binary(3000, seed=1)
    lo_s, hi_s = bootstrap_ci(auroc, y_small, p_small, n_boot=500)
    lo_b, hi_b = bootstrap_ci(auroc, y_big, p_big, n_boot=500)
    assert lo_s <= auroc(y_small, p_small) <= hi_s
    assert lo_b <= auroc(y_big, p_big) <= hi_b
    assert (hi_b - lo_b) < 0.5 * (hi_s - lo_s)
    assert 0.5 < lo_b < hi_b < 1


def test_reproducible_and_seed_dependent():
    y, p = noisy_binary(300)
    assert bootstrap_ci("auroc", y, p, n_boot=200, seed=4) == bootstrap_ci("auroc", y, p, n_boot=200, seed=4)
    assert bootstrap_ci("auroc", y, p, n_boot=200, seed=4) != bootstrap_ci("auroc", y, p, n_boot=200, seed=5)


def test_vectorised_matches_looped_callable():
    y, p = noisy_binary(200)
    fast = bootstrap_samples(auroc, y, p, n_boot=50, seed=2)
    slow = bootstrap_samples(lambda a, b: auroc(a, b), y, p, n_boot=50, seed=2)
    assert np.allclose(fast, slow)


def test_stratified_keeps_class_counts():
    y, p = noisy_binary(100)
    sens = bootstrap_samples(threshold_metric("sensitivity", 0.5), y, p, n_boot=100)
    n_pos = int(y.sum())
    # with the positive count fixed, sensitivity is always a multiple of 1 / n_pos
    assert np.allclose(np.round(sens * n_pos), sens * n_pos)


def test_thousand_by_thousand_is_fast():
    y, p = noisy_binary(1000)
    start = time.perf_counter()
    for name in ("auroc", "auprc"):
        bootstrap_ci(name, y, p, n_boot=1000)
    assert time.perf_counter() - start < 2.0  # two metrics, each well under a second


def test_undefined_and_off():
    assert bootstrap_ci("auroc", [0, 0, 0], [0.1, 0.2, 0.3], n_boot=20) == (None, None)
    assert bootstrap_ci("auroc", [0, 1], [0.1, 0.2], n_boot=0) == (None, None)


@pytest.mark.parametrize(("kwargs", "match"), [({"n_boot": -1}, "n_boot"), ({"alpha": 1.5}, "alpha")])
def test_bad_args(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        bootstrap_ci("auroc", [0, 1], [0.1, 0.2], **kwargs)
