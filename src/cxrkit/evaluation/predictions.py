"""One call that evaluates a model's predictions the way a clinical-AI paper reports them."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from cxrkit.core.decisions import multiclass_thresholds
from cxrkit.core.errors import DataFormatError
from cxrkit.core.jsonable import to_jsonable
from cxrkit.core.task import LabelSpace, TaskType
from cxrkit.evaluation.arrays import check_pair
from cxrkit.evaluation.bootstrap import bootstrap_ci, check_bootstrap_args
from cxrkit.evaluation.calibration import DEFAULT_BINS, calibration_report
from cxrkit.evaluation.metrics import accuracy_vs_threshold, auprc, auroc, binary_metrics, threshold_metric
from cxrkit.evaluation.multiclass import multiclass_metrics
from cxrkit.evaluation.multilabel import check_thresholds_list, multilabel_metrics

logger = logging.getLogger(__name__)

_CI_METRICS = ("accuracy", "sensitivity", "specificity", "ppv", "npv")


def _threshold_source(thresholds: Any) -> str:
    return "default_0.5" if thresholds is None else "provided"


def _binary(
    label_space: LabelSpace, y: np.ndarray, p: np.ndarray, thresholds: Any, n_boot: int, seed: int, alpha: float
) -> dict[str, Any]:
    known = ~np.isnan(y)
    if not known.any():
        raise DataFormatError("Every binary label is unknown (NaN); there is nothing to evaluate.")
    if not known.all():
        logger.warning("%d of %d images have an unknown label and are left out.", int((~known).sum()), y.size)
    y, p = y[known], p[known]
    t = 0.5 if thresholds is None else check_thresholds_list(thresholds, 1, "a binary task (positive class)")[0]
    m = binary_metrics(y, p, t)
    out: dict[str, Any] = {
        "positive_class": label_space.classes[1],
        "n": m["n"],
        "n_unlabelled": int((~known).sum()),
        "n_positive": m["n_positive"],
        "prevalence": m["prevalence"],
        "threshold": t,
        "threshold_source": _threshold_source(thresholds),
    }
    for key in ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "ppv", "npv", "f1", "auroc", "auprc"):
        out[key] = m[key]
    both = 0 < m["n_positive"] < m["n"]
    for key, fn in (("auroc", auroc), ("auprc", auprc)):
        ci = bootstrap_ci(fn, y, p, n_boot=n_boot, seed=seed, alpha=alpha) if (n_boot and both) else (None, None)
        out[f"{key}_ci"] = None if ci[0] is None else list(ci)
    for key in _CI_METRICS:
        ci = bootstrap_ci(threshold_metric(key, t), y, p, n_boot=n_boot, seed=seed, alpha=alpha) if n_boot else (None,)
        out[f"{key}_ci"] = None if ci[0] is None else list(ci)
    out["confusion"] = {k: m[k] for k in ("tp", "fp", "tn", "fn")}
    # Rows true [negative, positive], columns predicted: the layout of the multiclass confusion matrix.
    out["confusion_matrix"] = [[m["tn"], m["fp"]], [m["fn"], m["tp"]]]
    out["accuracy_vs_threshold"] = accuracy_vs_threshold(y, p, np.linspace(0.0, 1.0, 21))
    return out


def _operating_point(
    space: LabelSpace, y: np.ndarray, p: np.ndarray, chosen: dict[str, float], n_boot: int, seed: int, alpha: float
) -> dict[str, Any]:
    """The operating class against every other class at its threshold: the binary metrics with their CIs."""
    ((name, t),) = chosen.items()
    j = space.index(name)
    one_vs_rest = LabelSpace(TaskType.BINARY, (f"not {name}", name))
    out = _binary(one_vs_rest, (y == j).astype(np.float64), p[:, j], [t], n_boot, seed, alpha)
    out.pop("accuracy_vs_threshold", None)
    return {"class": name, **out}


def evaluate_predictions(
    label_space: LabelSpace,
    y_true: Any,
    probs: Any,
    thresholds: list[float] | Mapping[str, float] | float | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    n_bins: int = DEFAULT_BINS,
) -> dict[str, Any]:
    """Evaluate test-set predictions; the result is JSON-serialisable (plain Python, None for undefined).

    Args:
        label_space: the task and classes.
        y_true: label matrix N x C of 1 / 0 / NaN (binary: N x 2 one-hot [negative, positive]).
        probs: model probabilities: (N,) or (N, 1) for binary, N x C otherwise.
        thresholds: decision thresholds chosen on *validation* data (see ``choose_thresholds``): one value
            (or a 1-list) for binary, one per label for multilabel; multiclass: None (arg-max) or
            ``{operating class: threshold}`` (see :mod:`cxrkit.core.decisions`).
            None uses 0.5, recorded as ``threshold_source: "default_0.5"``.
        n_boot: bootstrap resamples for confidence intervals; 0 skips them (intervals are None).
        seed: bootstrap seed (results are reproducible).
        alpha: 0.05 gives 95% percentile intervals.
        n_bins: equal-width bins for the ECE and the reliability data.

    Returns:
        Always: ``task``, ``classes``, ``n``, ``ece``, ``calibration`` (reliability data) and ``bootstrap``
        (n_boot, seed, alpha, method).
        Binary adds ``positive_class``, ``n_unlabelled`` (rows with a NaN label, left out), ``n_positive``,
        ``prevalence``, ``threshold``, ``threshold_source``, ``accuracy``, ``balanced_accuracy``, ``sensitivity``,
        ``specificity``, ``ppv``, ``npv``, ``f1``, ``auroc``, ``auprc``, ``<metric>_ci`` [low, high] for auroc,
        auprc, accuracy, sensitivity, specificity, ppv and npv, ``confusion`` {tp, fp, tn, fn},
        ``confusion_matrix`` [[tn, fp], [fn, tp]] and ``accuracy_vs_threshold``.
        Multiclass adds the keys of :func:`cxrkit.evaluation.multiclass.multiclass_metrics`: ``accuracy``,
        ``accuracy_ci``, ``balanced_accuracy``, ``macro_precision``, ``macro_recall``, ``macro_f1``, ``macro_auroc``,
        ``macro_auroc_ci``, ``per_class`` and ``confusion_matrix``, all at the decisions of ``thresholds``; with an
        operating class also ``operating_point``: that class against the rest at its threshold (``class`` and the
        binary keys: ``threshold``, ``sensitivity``, ``specificity``, ... with CIs).
        Multilabel adds the keys of :func:`cxrkit.evaluation.multilabel.multilabel_metrics` (``mean_auroc``,
        ``mean_auroc_ci``, ``n_labels_scored``, ``per_label``, ``micro_accuracy``, ``accuracy_vs_threshold``),
        ``threshold_source`` and ``n_unknown_labels`` (NaN entries of ``y_true``).

    Raises:
        DataFormatError: shapes, label values or probability ranges are wrong.
        ConfigError: bad thresholds, n_boot, alpha or n_bins.
    """
    n_boot, alpha = check_bootstrap_args(n_boot, alpha)
    y, p = check_pair(label_space, y_true, probs)
    task = label_space.task
    classes = list(label_space.classes)
    result: dict[str, Any] = {"task": task.value, "classes": classes, "n": int(y.shape[0])}
    if task is TaskType.BINARY:
        result.update(_binary(label_space, y, p, thresholds, n_boot, seed, alpha))
    elif task is TaskType.MULTICLASS:
        chosen = multiclass_thresholds(thresholds, label_space)
        result.update(multiclass_metrics(y, p, classes, n_boot=n_boot, seed=seed, alpha=alpha, thresholds=chosen))
        if chosen:
            result["operating_point"] = _operating_point(label_space, y, p, chosen, n_boot, seed, alpha)
    else:
        result.update(multilabel_metrics(y, p, classes, thresholds, n_boot=n_boot, seed=seed, alpha=alpha))
        result["threshold_source"] = _threshold_source(thresholds)
        result["n_unknown_labels"] = int(np.isnan(y).sum())
    cal = calibration_report(label_space, y_true, probs, n_bins=n_bins)
    result["ece"] = cal["ece"]
    result["calibration"] = cal
    result["bootstrap"] = {
        "n_boot": n_boot,
        "seed": seed,
        "alpha": alpha,
        "method": "percentile; stratified by class (multilabel mean AUROC: by image)",
    }
    return to_jsonable(result)
