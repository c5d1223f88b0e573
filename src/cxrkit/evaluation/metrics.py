"""Binary metrics, point estimates and batched (one row per bootstrap resample).

Conventions:
    * A prediction is positive when ``p >= threshold``.
    * A ratio whose denominator is zero (e.g. PPV with no predicted positives) is undefined and is returned as
      ``None`` by the point functions and as NaN by the batched ones. AUROC and AUPRC are undefined (``None``)
      when only one class is present.
    * Every metric object has a ``batched(Y, P, M=None)`` method taking B x N arrays (``M`` an optional mask
      of known labels) so that :func:`cxrkit.evaluation.bootstrap.bootstrap_ci` can resample without a
      Python loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import rankdata

from cxrkit.core.errors import DataFormatError, UnknownNameError
from cxrkit.core.jsonable import nan_to_none
from cxrkit.evaluation.arrays import check_binary_arrays, check_threshold

THRESHOLD_METRICS = ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "ppv", "npv", "f1")


def _div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def ratios_from_counts(tp: Any, fp: Any, tn: Any, fn: Any) -> dict[str, np.ndarray]:
    """Threshold metrics from confusion counts (scalars or arrays); undefined values are NaN."""
    tp, fp, tn, fn = (np.asarray(x, dtype=np.float64) for x in (tp, fp, tn, fn))
    sens = _div(tp, tp + fn)
    spec = _div(tn, tn + fp)
    ppv = _div(tp, tp + fp)
    return {
        "accuracy": _div(tp + tn, tp + fp + tn + fn),
        "balanced_accuracy": (sens + spec) / 2.0,
        "sensitivity": sens,
        "specificity": spec,
        "ppv": ppv,
        "npv": _div(tn, tn + fn),
        # F1 from counts is defined whenever there is any positive or predicted positive.
        "f1": _div(2 * tp, 2 * tp + fp + fn),
    }


def _counts(yb: np.ndarray, pb: np.ndarray, threshold: float, mask: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    pred = pb >= threshold
    pos = yb > 0.5
    known = np.ones_like(pos) if mask is None else mask
    tp = (pred & pos & known).sum(axis=-1)
    fp = (pred & ~pos & known).sum(axis=-1)
    tn = (~pred & ~pos & known).sum(axis=-1)
    fn = (~pred & pos & known).sum(axis=-1)
    return tp, fp, tn, fn


def _masked_rows(Y: Any, P: Any, M: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """B x N float arrays with unknown entries (``M`` False) as label 0 and score -inf, and the known mask."""
    Y = np.atleast_2d(np.asarray(Y, dtype=np.float64))
    P = np.atleast_2d(np.asarray(P, dtype=np.float64))
    if M is None:
        return Y, P, np.ones(Y.shape, dtype=bool)
    M = np.atleast_2d(M).astype(bool)
    return np.where(M, Y, 0.0), np.where(M, P, -np.inf), M


def auroc_batched(Y: np.ndarray, P: np.ndarray, M: np.ndarray | None = None) -> np.ndarray:
    """AUROC of each row of B x N arrays by the rank-sum (Mann-Whitney) formula; ties count one half.

    ``M`` (bool, B x N) marks known labels; unknown entries are ignored. Rows with one class give NaN.
    """
    # Unknown entries are pushed below every known score: they take the lowest ranks, so every known
    # rank is shifted by the same count, which is subtracted below.
    Y, P, known = _masked_rows(Y, P, M)
    n_known = known.sum(axis=-1).astype(np.float64)
    ranks = rankdata(P, axis=-1)
    n_pos = Y.sum(axis=-1)
    n_neg = n_known - n_pos
    shift = Y.shape[-1] - n_known
    rank_sum = (ranks * Y).sum(axis=-1) - n_pos * shift
    return _div(rank_sum - n_pos * (n_pos + 1) / 2.0, n_pos * n_neg)


def auprc_batched(Y: np.ndarray, P: np.ndarray, M: np.ndarray | None = None) -> np.ndarray:
    """Average precision of each row of B x N arrays (step-wise, as scikit-learn's average_precision_score).

    Tied scores form one threshold: every positive in a tie group is credited with the precision at the end
    of its group. Rows with no positive give NaN.
    """
    Y, P, known = _masked_rows(Y, P, M)
    order = np.argsort(-P, axis=-1, kind="stable")
    Ps = np.take_along_axis(P, order, axis=-1)
    Ys = np.take_along_axis(Y, order, axis=-1)
    Ks = np.take_along_axis(known, order, axis=-1).astype(np.float64)
    n = Y.shape[-1]
    tp = np.cumsum(Ys, axis=-1)
    seen = np.cumsum(Ks, axis=-1)
    precision = _div(tp, seen)
    is_end = np.ones(Ps.shape, dtype=bool)
    is_end[..., :-1] = Ps[..., :-1] != Ps[..., 1:]
    idx = np.where(is_end, np.arange(n), n - 1)
    group_end = np.minimum.accumulate(idx[..., ::-1], axis=-1)[..., ::-1]
    prec_at_end = np.take_along_axis(precision, group_end, axis=-1)
    n_pos = Ys.sum(axis=-1)
    return _div(np.nansum(Ys * prec_at_end, axis=-1), n_pos)


class _RankMetric:
    """A threshold-free metric (AUROC, AUPRC): ``metric(y, p)`` -> float | None, plus ``batched``."""

    def __init__(self, name: str, fn: Any):
        self.name = name
        self._fn = fn

    def __call__(self, y: Any, p: Any) -> float | None:
        y, p = check_binary_arrays(y, p)
        return nan_to_none(self._fn(y[None, :], p[None, :])[0])

    def batched(self, Y: np.ndarray, P: np.ndarray, M: np.ndarray | None = None) -> np.ndarray:
        return self._fn(Y, P, M)

    def __repr__(self) -> str:
        return f"<metric {self.name}>"


auroc = _RankMetric("auroc", auroc_batched)
"""Area under the ROC curve of 1-D ``y`` (0/1) and ``p``; None when only one class is present."""

auprc = _RankMetric("auprc", auprc_batched)
"""Area under the precision-recall curve (average precision); None when there is no positive."""


@dataclass(frozen=True)
class ThresholdMetric:
    """A metric of the thresholded predictions ``p >= threshold``: ``metric(y, p)`` -> float | None.

    Attributes:
        name: one of ``THRESHOLD_METRICS``.
        threshold: decision threshold in [0, 1].
    """

    name: str
    threshold: float = 0.5

    def __post_init__(self) -> None:
        if self.name not in THRESHOLD_METRICS:
            raise UnknownNameError("threshold metric", self.name, THRESHOLD_METRICS)
        object.__setattr__(self, "threshold", check_threshold(self.threshold))

    def batched(self, Y: np.ndarray, P: np.ndarray, M: np.ndarray | None = None) -> np.ndarray:
        return ratios_from_counts(*_counts(np.atleast_2d(Y), np.atleast_2d(P), self.threshold, M))[self.name]

    def __call__(self, y: Any, p: Any) -> float | None:
        y, p = check_binary_arrays(y, p)
        return nan_to_none(self.batched(y[None, :], p[None, :])[0])


def threshold_metric(name: str, threshold: float = 0.5) -> ThresholdMetric:
    """Metric callable for ``name`` in ``THRESHOLD_METRICS`` at ``threshold`` (usable with bootstrap_ci)."""
    return ThresholdMetric(name, threshold)


def get_metric(name: str, threshold: float = 0.5) -> Any:
    """Metric callable by name: 'auroc', 'auprc' or one of ``THRESHOLD_METRICS`` (at ``threshold``)."""
    if name == "auroc":
        return auroc
    if name == "auprc":
        return auprc
    if name in THRESHOLD_METRICS:
        return ThresholdMetric(name, threshold)
    raise UnknownNameError("metric", name, ("auroc", "auprc", *THRESHOLD_METRICS))


def binary_metrics(y: Any, p: Any, threshold: float = 0.5) -> dict[str, Any]:
    """All binary metrics of one operating point.

    Args:
        y: 1-D targets, 0 or 1 (mask out NaN first).
        p: 1-D probabilities of the positive class.
        threshold: a prediction is positive when ``p >= threshold``.

    Returns:
        Plain-Python dict with ``accuracy``, ``balanced_accuracy``, ``sensitivity``, ``specificity``, ``ppv``,
        ``npv``, ``f1``, ``auroc``, ``auprc`` (float, or None where undefined: zero denominator or a single
        class), ``tp``, ``fp``, ``tn``, ``fn``, ``n``, ``n_positive`` (int), ``prevalence`` and ``threshold``.

    Raises:
        DataFormatError: shapes differ, targets are not 0/1, or probabilities are outside [0, 1].
        ConfigError: threshold outside [0, 1].
    """
    y, p = check_binary_arrays(y, p)
    threshold = check_threshold(threshold)
    tp, fp, tn, fn = (int(c[0]) for c in _counts(y[None, :], p[None, :], threshold))
    out: dict[str, Any] = {k: nan_to_none(v) for k, v in ratios_from_counts(tp, fp, tn, fn).items()}
    out["auroc"] = nan_to_none(auroc_batched(y[None, :], p[None, :])[0])
    out["auprc"] = nan_to_none(auprc_batched(y[None, :], p[None, :])[0])
    out.update(tp=tp, fp=fp, tn=tn, fn=fn, n=int(y.size), n_positive=int(y.sum()))
    out["prevalence"] = float(y.mean())
    out["threshold"] = threshold
    return out


def accuracy_vs_threshold(y: Any, p: Any, thresholds: Any = None) -> dict[str, list[float | None]]:
    """Accuracy of ``p >= t`` for each threshold ``t``, over the known (non-NaN) entries of ``y``.

    Args:
        y: targets of 1 / 0 / NaN, 1-D (binary) or N x C (multilabel: accuracy over all known label entries).
        p: probabilities, same shape as ``y``.
        thresholds: thresholds to scan; default 101 points 0, 0.01, ..., 1.

    Returns:
        ``{"thresholds": [...], "accuracy": [...]}`` (accuracy None when no label is known).
    """
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    if y.shape != p.shape:
        raise DataFormatError(f"y has shape {y.shape} but p has {p.shape}; they must match.")
    t = np.linspace(0.0, 1.0, 101) if thresholds is None else np.asarray(thresholds, dtype=np.float64).ravel()
    known = ~np.isnan(y)
    yk, pk = y[known], p[known]
    if yk.size == 0:
        return {"thresholds": t.tolist(), "accuracy": [None] * t.size}
    # Sorting once makes every threshold a binary search: O((N + T) log N) rather than O(N * T).
    order = np.argsort(pk)
    ps, ys = pk[order], yk[order]
    pos_below = np.concatenate([[0.0], np.cumsum(ys)])  # positives among the first k sorted scores
    k = np.searchsorted(ps, t, side="left")  # scores < t are predicted negative
    n_pos = pos_below[-1]
    correct = (k - pos_below[k]) + (n_pos - pos_below[k])
    return {"thresholds": t.tolist(), "accuracy": (correct / yk.size).tolist()}
