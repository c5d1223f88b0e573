"""Calibration: expected calibration error (ECE) and reliability-diagram data, with equal-width bins.

What is compared, per task (see :func:`calibration_pairs`):
    * binary: the positive-class probability against the positive label;
    * multiclass: the top (max) softmax probability against "the argmax is the true class";
    * multilabel: every known (non-NaN) label's probability against that label, flattened.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cxrkit.core.errors import ConfigError, DataFormatError
from cxrkit.core.task import LabelSpace, TaskType
from cxrkit.evaluation.arrays import check_pair

DEFAULT_BINS = 15


def _check_bins(n_bins: Any) -> int:
    if isinstance(n_bins, bool) or not isinstance(n_bins, int | np.integer) or n_bins < 1:
        raise ConfigError(f"n_bins must be an int >= 1 (15 is usual), got {n_bins!r}.")
    return int(n_bins)


def calibration_pairs(label_space: LabelSpace, y_true: Any, probs: Any) -> tuple[np.ndarray, np.ndarray]:
    """Confidence and outcome vectors (both 1-D float) to calibrate, chosen by task as described above."""
    y, p = check_pair(label_space, y_true, probs)
    if label_space.task is TaskType.BINARY:
        known = ~np.isnan(y)
        return p[known], y[known]
    if label_space.task is TaskType.MULTICLASS:
        return p.max(axis=1), (p.argmax(axis=1) == y).astype(np.float64)
    known = ~np.isnan(y)
    return p[known], y[known]


def reliability_data(confidence: Any, outcome: Any, n_bins: int = DEFAULT_BINS) -> dict[str, Any]:
    """Per-bin data of a reliability diagram over ``n_bins`` equal-width bins of [0, 1].

    Bins are right-closed ``(lo, hi]`` except the first, which also holds 0.

    Returns:
        dict with ``bin_edges`` (n_bins + 1), and per bin ``bin_confidence`` (mean confidence),
        ``bin_accuracy`` (mean outcome) (both None for empty bins) and ``bin_count``; plus ``n`` and ``ece``.
    """
    n_bins = _check_bins(n_bins)
    conf = np.asarray(confidence, dtype=np.float64).ravel()
    out = np.asarray(outcome, dtype=np.float64).ravel()
    if conf.shape != out.shape:
        raise DataFormatError(f"confidence has {conf.size} values but outcome has {out.size}; they must match.")
    if conf.size and (not np.isfinite(conf).all() or conf.min() < 0 or conf.max() > 1):
        raise DataFormatError("confidence must be finite probabilities in [0, 1].")
    if out.size and not np.isin(out, (0.0, 1.0)).all():
        raise DataFormatError("outcome must hold only 0 and 1 (mask unknown labels first).")
    idx = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins)
    sum_conf = np.bincount(idx, weights=conf, minlength=n_bins)
    sum_out = np.bincount(idx, weights=out, minlength=n_bins)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_conf = np.where(count > 0, sum_conf / np.maximum(count, 1), np.nan)
        mean_out = np.where(count > 0, sum_out / np.maximum(count, 1), np.nan)
    n = int(conf.size)
    ece = float(np.nansum(count * np.abs(mean_out - mean_conf)) / n) if n else None
    return {
        "n_bins": n_bins,
        "bin_edges": np.linspace(0.0, 1.0, n_bins + 1).tolist(),
        "bin_confidence": [None if np.isnan(v) else float(v) for v in mean_conf],
        "bin_accuracy": [None if np.isnan(v) else float(v) for v in mean_out],
        "bin_count": count.astype(int).tolist(),
        "n": n,
        "ece": ece,
    }


def expected_calibration_error(confidence: Any, outcome: Any, n_bins: int = DEFAULT_BINS) -> float | None:
    """ECE = sum over bins of (bin share) * |bin accuracy - bin mean confidence|; None for no data."""
    return reliability_data(confidence, outcome, n_bins)["ece"]


def calibration_report(label_space: LabelSpace, y_true: Any, probs: Any, n_bins: int = DEFAULT_BINS) -> dict[str, Any]:
    """Reliability-diagram data and ECE for a task's predictions (see the module docstring)."""
    conf, out = calibration_pairs(label_space, y_true, probs)
    return reliability_data(conf, out, n_bins)
