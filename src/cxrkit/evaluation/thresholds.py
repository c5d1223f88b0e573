"""Decision thresholds, chosen on validation data only (never on the test set they are reported on).

A prediction is positive when ``p >= threshold``, the same rule as :func:`cxrkit.evaluation.metrics.binary_metrics`.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
from sklearn.metrics import roc_curve

from cxrkit.core.decisions import check_operating_class
from cxrkit.core.errors import ConfigError, DataFormatError, UnknownNameError
from cxrkit.core.task import LabelSpace, TaskType
from cxrkit.evaluation.arrays import check_binary_arrays, check_pair

logger = logging.getLogger(__name__)

METHODS = ("youden", "youden_band", "sensitivity")
DEFAULT_BAND = 0.01
DEFAULT_THRESHOLD = 0.5


def _need_both_classes(y: np.ndarray, what: str) -> None:
    n_pos = int(y.sum())
    if y.size == 0:
        raise DataFormatError(f"{what} needs labelled data, but no target is known (all NaN or empty).")
    if n_pos == 0 or n_pos == y.size:
        raise DataFormatError(
            f"{what} needs both classes, but all {y.size} targets are {int(y[0])}; "
            "choose thresholds on a validation set with positives and negatives."
        )


def youden_threshold(y: Any, p: Any) -> float:
    """Threshold maximising Youden's J = sensitivity + specificity - 1.

    Ties in J go to the highest threshold (the most specific operating point).

    Args:
        y: 1-D targets, 0 or 1.
        p: 1-D probabilities of the positive class.

    Returns:
        A threshold equal to one of the scores in ``p``.

    Raises:
        DataFormatError: bad arrays, or only one class present.
    """
    y, p = check_binary_arrays(y, p)
    _need_both_classes(y, "Youden's threshold")
    fpr, tpr, thr = roc_curve(y, p, drop_intermediate=False)
    # The first point of roc_curve is the "predict nothing" threshold (+inf); it cannot be a decision threshold.
    j = (tpr - fpr)[1:]
    # Rounding makes equal J values differ in the last bit (2/3 vs 1 - 1/3), so ties are found with a tolerance.
    best = int(np.flatnonzero(j >= j.max() - 1e-12)[0])
    return float(thr[1:][best])


def youden_band_threshold(y: Any, p: Any, band: float = DEFAULT_BAND) -> float:
    """The middle of the thresholds whose Youden's J is within ``band`` of the best.

    On a small validation set J is often flat over a wide range of thresholds, and the single best
    point lands on its edge by one or two images. Under a shift between validation and deployment
    data, a threshold at the centre of the near-optimal band (the median of its candidate scores)
    keeps the largest margin to both failure modes.

    Args:
        y: 1-D targets, 0 or 1.
        p: 1-D probabilities of the positive class.
        band: how far below the best J a threshold may be and still count as near-optimal.
    """
    if not 0.0 <= float(band) < 1.0:
        raise ConfigError(f"band must be in [0, 1), e.g. 0.01, got {band}.")
    y, p = check_binary_arrays(y, p)
    _need_both_classes(y, "Youden's threshold")
    fpr, tpr, thr = roc_curve(y, p, drop_intermediate=False)
    j, thr = (tpr - fpr)[1:], thr[1:]
    near = thr[j >= j.max() - float(band) - 1e-12]
    return float(np.median(near))


def threshold_for_sensitivity(y: Any, p: Any, target: float) -> float:
    """Highest threshold whose sensitivity on ``(y, p)`` is at least ``target``.

    Args:
        y: 1-D targets, 0 or 1.
        p: 1-D probabilities of the positive class.
        target: wanted sensitivity in (0, 1], e.g. 0.95 for a screening operating point.

    Returns:
        The k-th highest positive score, k = ceil(target * n_positive).

    Raises:
        ConfigError: target outside (0, 1].
        DataFormatError: bad arrays, or no positive target.
    """
    try:
        target = float(target)
    except (TypeError, ValueError):
        raise ConfigError(f"target sensitivity must be a number in (0, 1], got {target!r}.") from None
    if not 0.0 < target <= 1.0:
        raise ConfigError(f"target sensitivity must be in (0, 1], e.g. 0.95, got {target}.")
    y, p = check_binary_arrays(y, p)
    pos = np.sort(p[y == 1])[::-1]
    if pos.size == 0:
        raise DataFormatError("threshold_for_sensitivity needs at least one positive target; found none.")
    # The small epsilon keeps e.g. 0.9 * 10 = 9.000000000000002 from asking for a 10th positive.
    k = max(1, math.ceil(target * pos.size - 1e-9))
    return float(pos[k - 1])


def _one_threshold(y: np.ndarray, p: np.ndarray, method: str, target: float | None, name: str) -> float:
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == y.size:
        logger.warning(
            "Cannot choose a threshold for %r: its %d known validation labels are all %d; using %.2f.",
            name,
            y.size,
            int(y[0]) if y.size else -1,
            DEFAULT_THRESHOLD,
        )
        return DEFAULT_THRESHOLD
    if method == "youden":
        return youden_threshold(y, p)
    if method == "youden_band":
        return youden_band_threshold(y, p)
    return threshold_for_sensitivity(y, p, target)  # type: ignore[arg-type]


def choose_thresholds(
    label_space: LabelSpace,
    y_true: Any,
    probs: Any,
    method: str = "youden",
    target_sensitivity: float | None = None,
    operating_class: str | None = None,
) -> list[float] | dict[str, float]:
    """Choose decision thresholds on validation predictions.

    Args:
        label_space: the task and its classes.
        y_true: validation label matrix N x C (1 / 0 / NaN; binary N x 2 one-hot).
        probs: validation probabilities ((N,) binary, N x C otherwise).
        method: ``"youden"`` (maximise sensitivity + specificity), ``"youden_band"`` (centre of the
            thresholds within 0.01 of the best J) or ``"sensitivity"`` (highest threshold
            reaching ``target_sensitivity``).
        target_sensitivity: required for ``method="sensitivity"``.
        operating_class: multiclass only: the class to give a one-vs-rest operating point (chosen on its
            probability against every other class); the others are decided by arg-max.

    Returns:
        Binary: ``[t]``, one threshold for the positive class. Multilabel: one threshold per label, in class
        order; a label whose known validation labels hold one class only gets 0.5 (with a warning).
        Multiclass: ``{operating_class: t}``, or ``{}`` without one (the decision is the arg-max).

    Raises:
        UnknownNameError: unknown ``method``.
        ConfigError: ``target_sensitivity`` missing or out of (0, 1] for the sensitivity method.
        DataFormatError: bad arrays; for binary, a validation set with only one class.
    """
    if method not in METHODS:
        raise UnknownNameError("threshold method", str(method), METHODS)
    if method == "sensitivity" and target_sensitivity is None:
        raise ConfigError("method='sensitivity' needs target_sensitivity, e.g. target_sensitivity=0.95.")
    if method in ("youden", "youden_band") and target_sensitivity is not None:
        raise ConfigError(
            f"target_sensitivity={target_sensitivity} is only used with method='sensitivity'; "
            "drop it or pass method='sensitivity'."
        )
    if method == "sensitivity" and not (isinstance(target_sensitivity, int | float) and 0 < target_sensitivity <= 1):
        raise ConfigError(f"target_sensitivity must be a number in (0, 1], e.g. 0.95, got {target_sensitivity!r}.")
    j = None if operating_class is None else check_operating_class(label_space, operating_class)
    y, p = check_pair(label_space, y_true, probs)
    if label_space.task is TaskType.MULTICLASS:
        if j is None:
            return {}
        name = label_space.classes[j]
        one_vs_rest = (y == j).astype(np.float64)  # multiclass targets are class indices
        _need_both_classes(one_vs_rest, f"Choosing a {method} threshold for {name!r}")
        return {name: _one_threshold(one_vs_rest, p[:, j], method, target_sensitivity, name)}
    if label_space.task is TaskType.BINARY:
        known = ~np.isnan(y)
        _need_both_classes(y[known], f"Choosing a {method} threshold")
        return [_one_threshold(y[known], p[known], method, target_sensitivity, label_space.classes[1])]
    out = []
    for j, name in enumerate(label_space.classes):
        known = ~np.isnan(y[:, j])
        out.append(_one_threshold(y[known, j], p[known, j], method, target_sensitivity, name))
    return out
