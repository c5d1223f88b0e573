"""Multilabel metrics: one binary problem per finding, unknown (NaN) labels masked out per label."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from cxrkit.core.errors import ConfigError, DataFormatError
from cxrkit.core.jsonable import nan_to_none
from cxrkit.evaluation.arrays import check_threshold
from cxrkit.evaluation.bootstrap import (
    bootstrap_ci,
    bootstrap_indices,
    check_bootstrap_args,
    percentile_interval,
)
from cxrkit.evaluation.metrics import accuracy_vs_threshold, auroc, auroc_batched, binary_metrics

logger = logging.getLogger(__name__)


def check_thresholds_list(thresholds: Any, n: int, what: str) -> list[float]:
    """``thresholds`` as a list of ``n`` floats in [0, 1], or raise :class:`ConfigError`."""
    if isinstance(thresholds, int | float | np.floating):
        thresholds = [thresholds]
    try:
        values = list(thresholds)
    except TypeError:
        raise ConfigError(f"thresholds must be a list of {n} numbers for {what}, got {thresholds!r}.") from None
    if len(values) != n:
        raise ConfigError(
            f"thresholds has {len(values)} value(s) but {what} needs {n}; "
            "use choose_thresholds(...) on validation data, or pass None for 0.5."
        )
    return [check_threshold(t, "threshold") for t in values]


def multilabel_metrics(
    y: Any,
    probs: Any,
    classes: list[str] | tuple[str, ...],
    thresholds: list[float] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, Any]:
    """Per-label metrics of independent sigmoid outputs.

    Args:
        y: N x C label matrix of 1 / 0 / NaN (NaN = unknown, left out of that label's metrics only).
        probs: N x C probabilities.
        classes: finding names in column order.
        thresholds: one per label (from validation data); None uses 0.5 for every label.
        n_boot: bootstrap resamples (0: no intervals). Per-label intervals are stratified by that label;
            the mean-AUROC interval resamples whole images (rows), keeping labels of an image together.
        seed: bootstrap seed.
        alpha: 0.05 gives 95% intervals.

    Returns:
        dict with ``mean_auroc`` (+ ``mean_auroc_ci``) over the labels with both classes present,
        ``n_labels_scored``, ``per_label`` (finding -> auroc, auroc_ci, auprc, threshold, n, n_positive,
        sensitivity, specificity, ppv, npv, f1, and ``reason`` when AUROC is None), ``accuracy_vs_threshold``
        (accuracy over all known label entries, 21 thresholds) and ``micro_accuracy`` at the chosen thresholds.
    """
    n_boot, alpha = check_bootstrap_args(n_boot, alpha)
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(probs, dtype=np.float64)
    n_cls = len(classes)
    if y.shape != p.shape or y.ndim != 2 or y.shape[1] != n_cls:
        raise DataFormatError(f"y and probs must both be N x {n_cls}, got shapes {y.shape} and {p.shape}.")
    ts = [0.5] * n_cls if thresholds is None else check_thresholds_list(thresholds, n_cls, f"{n_cls} labels")
    known = ~np.isnan(y)
    per_label: dict[str, Any] = {}
    correct = 0
    for j, name in enumerate(classes):
        per_label[name], hits = _label_entry(name, y[known[:, j], j], p[known[:, j], j], ts[j], n_boot, seed, alpha)
        correct += hits
    scored = np.array([per_label[c]["auroc"] is not None for c in classes], dtype=bool)
    aucs = np.array([per_label[c]["auroc"] if scored[j] else np.nan for j, c in enumerate(classes)], dtype=float)
    out: dict[str, Any] = {
        "mean_auroc": nan_to_none(aucs[scored].mean()) if scored.any() else None,
        "mean_auroc_ci": None,
        "n_labels_scored": int(scored.sum()),
        "per_label": per_label,
        "micro_accuracy": nan_to_none(correct / known.sum()) if known.any() else None,
        "accuracy_vs_threshold": accuracy_vs_threshold(y, p, np.linspace(0.0, 1.0, 21)),
    }
    if n_boot and scored.any():
        out["mean_auroc_ci"] = _mean_auroc_ci(y, p, known, np.flatnonzero(scored), n_boot, seed, alpha)
    return out


_LABEL_METRICS = ("auroc", "auprc", "sensitivity", "specificity", "ppv", "npv", "f1")


def _label_entry(
    name: str, yj: np.ndarray, pj: np.ndarray, threshold: float, n_boot: int, seed: int, alpha: float
) -> tuple[dict[str, Any], int]:
    """One finding's metrics over its known labels, and how many of them are decided correctly."""
    entry: dict[str, Any] = {"n": int(yj.size), "n_positive": int(yj.sum()), "threshold": threshold}
    if yj.size == 0:
        entry.update(dict.fromkeys((*_LABEL_METRICS, "auroc_ci")), reason="no known label (all NaN)")
        return entry, 0
    m = binary_metrics(yj, pj, threshold)
    entry.update({k: m[k] for k in _LABEL_METRICS})
    if m["auroc"] is None:
        only = "positive" if entry["n_positive"] else "negative"
        entry["reason"] = f"only one class present: all {yj.size} known labels are {only}"
        entry["auroc_ci"] = None
        logger.info("AUROC of %r is undefined: %s.", name, entry["reason"])
    else:
        ci = bootstrap_ci(auroc, yj, pj, n_boot=n_boot, seed=seed, alpha=alpha, stratified=True)
        entry["auroc_ci"] = None if ci[0] is None else list(ci)
    return entry, int(m["tp"] + m["tn"])


def _mean_auroc_ci(
    y: np.ndarray, p: np.ndarray, known: np.ndarray, cols: np.ndarray, n_boot: int, seed: int, alpha: float
) -> list[float] | None:
    """Interval of the mean AUROC over ``cols``, resampling whole images (an image's labels stay together)."""
    samples = []
    for idx in bootstrap_indices(y.shape[0], n_boot, seed):
        per = np.stack([auroc_batched(np.nan_to_num(y[idx, j]), p[idx, j], known[idx, j]) for j in cols], axis=1)
        with np.errstate(invalid="ignore"):
            finite = np.isfinite(per)
            samples.append(np.where(finite.any(axis=1), np.nansum(per, axis=1) / np.maximum(finite.sum(1), 1), np.nan))
    lo, hi = percentile_interval(np.concatenate(samples), alpha)
    return None if lo is None else [lo, hi]
