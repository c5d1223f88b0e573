"""Multiclass metrics: arg-max (or operating-point) decisions, per-class report, confusion matrix, one-vs-rest AUROC."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from cxrkit.core.decisions import decide
from cxrkit.core.errors import DataFormatError
from cxrkit.core.jsonable import nan_to_none
from cxrkit.core.task import LabelSpace, TaskType
from cxrkit.evaluation.bootstrap import bootstrap_indices, check_bootstrap_args, percentile_interval
from cxrkit.evaluation.metrics import auroc_batched


def confusion_matrix(y: Any, pred: Any, num_classes: int) -> np.ndarray:
    """C x C count matrix; rows are the true class, columns the predicted class."""
    y = np.asarray(y, dtype=np.int64)
    pred = np.asarray(pred, dtype=np.int64)
    return np.bincount(y * num_classes + pred, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def report_from_confusion(cm: Any, classes: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Per-class precision, recall, F1 and support from a confusion matrix (rows true, columns predicted).

    Undefined values (no prediction of a class for precision, no example of it for recall) are None.
    Macro averages are over the classes where the value is defined.
    """
    cm = np.asarray(cm, dtype=np.float64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] != len(classes):
        raise DataFormatError(f"confusion matrix must be {len(classes)} x {len(classes)}, got shape {cm.shape}.")
    tp = np.diag(cm)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), np.nan)
        recall = np.where(support > 0, tp / np.maximum(support, 1), np.nan)
        denom = precision + recall
        f1 = np.where(denom > 0, 2 * precision * recall / np.where(denom > 0, denom, 1), 0.0)
    f1 = np.where(np.isnan(precision) | np.isnan(recall), np.nan, f1)
    per_class = {
        c: {
            "precision": nan_to_none(precision[i]),
            "recall": nan_to_none(recall[i]),
            "f1": nan_to_none(f1[i]),
            "support": int(support[i]),
        }
        for i, c in enumerate(classes)
    }
    total = cm.sum()

    def _macro(v: np.ndarray) -> float | None:
        return nan_to_none(np.nanmean(v)) if np.isfinite(v).any() else None

    return {
        "accuracy": nan_to_none(tp.sum() / total) if total else None,
        "balanced_accuracy": _macro(recall),
        "macro_precision": _macro(precision),
        "macro_recall": _macro(recall),
        "macro_f1": _macro(f1),
        "per_class": per_class,
    }


def multiclass_metrics(
    y: Any,
    probs: Any,
    classes: list[str] | tuple[str, ...],
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    thresholds: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Metrics of softmax predictions against class indices, decided by :func:`cxrkit.core.decisions.decide`
    (the arg-max, or ``thresholds``' operating class first).

    Args:
        y: (N,) int class indices (see :func:`cxrkit.evaluation.arrays.class_indices`).
        probs: N x C softmax probabilities.
        classes: class names in column order.
        n_boot: bootstrap resamples for the confidence intervals (0: none); resampling is stratified by class.
        seed: bootstrap seed.
        alpha: 0.05 gives 95% intervals.
        thresholds: ``{operating class: threshold}`` or None (arg-max).

    Returns:
        dict with ``accuracy`` (+ ``accuracy_ci``), ``balanced_accuracy``, ``macro_precision``, ``macro_recall``,
        ``macro_f1``, ``macro_auroc`` (+ ``macro_auroc_ci``; mean of the defined one-vs-rest AUROCs),
        ``per_class`` (class -> precision, recall, f1, support, auroc, auroc_ci), ``confusion_matrix``
        (rows true, columns predicted) and ``classes``.
    """
    n_boot, alpha = check_bootstrap_args(n_boot, alpha)
    y = np.asarray(y, dtype=np.int64)
    p = np.asarray(probs, dtype=np.float64)
    n_cls = len(classes)
    if p.ndim != 2 or p.shape != (y.size, n_cls):
        raise DataFormatError(f"probs must be {y.size} x {n_cls} to match y and classes, got shape {p.shape}.")
    pred = decide(LabelSpace(TaskType.MULTICLASS, tuple(classes)), p, thresholds)
    cm = confusion_matrix(y, pred, n_cls)
    out = report_from_confusion(cm, classes)
    onehot = np.eye(n_cls)[y]
    # One-vs-rest AUROC of every class at once: the C columns become C "rows" of the batched metric.
    aucs = auroc_batched(onehot.T, p.T)
    defined = np.isfinite(aucs)
    for i, c in enumerate(classes):
        out["per_class"][c]["auroc"] = nan_to_none(aucs[i])
        out["per_class"][c]["auroc_ci"] = None
    out["macro_auroc"] = nan_to_none(aucs[defined].mean()) if defined.any() else None
    out["accuracy_ci"] = None
    out["macro_auroc_ci"] = None
    if n_boot:
        acc_s, macro_s, cls_s = [], [], []
        for idx in bootstrap_indices(y.size, n_boot, seed, strata=y):
            yb, pb, predb = onehot[idx], p[idx], pred[idx]
            acc_s.append((predb == y[idx]).mean(axis=1))
            per = np.stack([auroc_batched(yb[..., k], pb[..., k]) for k in range(n_cls)], axis=1)
            cls_s.append(per)
            # Only the classes defined on the full data enter the macro mean, as in the point estimate.
            macro_s.append(per[:, defined].mean(axis=1) if defined.any() else np.full(len(idx), np.nan))
        out["accuracy_ci"] = list(percentile_interval(np.concatenate(acc_s), alpha))
        out["macro_auroc_ci"] = list(percentile_interval(np.concatenate(macro_s), alpha))
        per_all = np.concatenate(cls_s, axis=0)
        for i, c in enumerate(classes):
            if defined[i]:
                out["per_class"][c]["auroc_ci"] = list(percentile_interval(per_all[:, i], alpha))
    out["confusion_matrix"] = cm.astype(int).tolist()
    out["classes"] = list(classes)
    return out
