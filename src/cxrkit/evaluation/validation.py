"""Validation as every trainer does it: choose thresholds on validation predictions, evaluate at them, report.

One function for the end of a training run, a leave-source-out pooling, a classical baseline and
``cxr threshold``, so that they cannot drift apart (which keys count as the headline, what happens when a
validation set cannot support a threshold).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cxrkit.core.errors import DataFormatError
from cxrkit.core.task import LabelSpace
from cxrkit.evaluation.predictions import evaluate_predictions
from cxrkit.evaluation.report import write_report
from cxrkit.evaluation.thresholds import choose_thresholds

log = logging.getLogger(__name__)

# Per-bin and per-threshold curves: drawn in the report, left out of the metrics a bundle or summary keeps.
CURVE_KEYS = ("calibration", "accuracy_vs_threshold")


def headline_auroc(result: dict[str, Any]) -> float:
    """The one AUROC a task reports: binary auroc, multiclass macro, multilabel mean (NaN where undefined)."""
    value = result.get("auroc", result.get("macro_auroc", result.get("mean_auroc")))
    return float("nan") if value is None else float(value)


def without_curves(result: dict[str, Any]) -> dict[str, Any]:
    """``result`` without the curves in ``CURVE_KEYS``."""
    return {k: v for k, v in result.items() if k not in CURVE_KEYS}


@dataclass
class Validation:
    """Thresholds chosen on validation (``[]``: 0.5; multiclass ``{}`` or its operating class's) and the full
    result at them."""

    thresholds: list[float] | dict[str, float]
    result: dict[str, Any]

    @property
    def metrics(self) -> dict[str, Any]:
        """The result without its curves: what a bundle's ``metrics.validation`` and a summary keep."""
        return without_curves(self.result)


def validate(
    space: LabelSpace,
    labels: np.ndarray,
    probs: np.ndarray,
    method: str = "youden",
    target_sensitivity: float | None = None,
    operating_class: str | None = None,
    *,
    fallback: bool = False,
    n_boot: int = 1000,
    report: Path | None = None,
    title: str = "",
    plots: bool = True,
) -> Validation:
    """Choose thresholds (``method``) on ``labels``/``probs``, evaluate at them, and write ``report`` if given.

    ``operating_class``: multiclass only, the class given a one-vs-rest threshold (``choose_thresholds``).
    ``plots``: False writes the report without its PNG figures.
    ``fallback``: where the data cannot support a threshold (a held-out source with one class only) use 0.5
    with a warning instead of raising :class:`DataFormatError`.
    """
    try:
        thresholds = choose_thresholds(space, labels, probs, method, target_sensitivity, operating_class)
    except DataFormatError as err:
        if not fallback:
            raise
        log.warning("thresholds not chosen on this validation set (%s); 0.5 used", err)
        thresholds = []
    result = evaluate_predictions(space, labels, probs, thresholds=thresholds or None, n_boot=n_boot)
    if report is not None:
        write_report(result, report, labels, probs, space, title=title, plots=plots)
    return Validation(thresholds, result)
