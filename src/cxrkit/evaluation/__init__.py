"""Evaluation of predictions the way a clinical-AI paper reports them: arrays in, no torch, no training.

Typical use::

    thresholds = choose_thresholds(label_space, y_val, p_val, method="youden")  # validation data only
    result = evaluate_predictions(label_space, y_test, p_test, thresholds=thresholds)
    write_report(result, "runs/x/eval", y_test, p_test, label_space, title="Pneumonia, test set")
"""

from cxrkit.core.jsonable import to_jsonable
from cxrkit.evaluation.arrays import binary_target, class_indices, targets_from_labels
from cxrkit.evaluation.bootstrap import bootstrap_ci, bootstrap_samples
from cxrkit.evaluation.calibration import (
    calibration_pairs,
    calibration_report,
    expected_calibration_error,
    reliability_data,
)
from cxrkit.evaluation.metrics import (
    THRESHOLD_METRICS,
    accuracy_vs_threshold,
    auprc,
    auroc,
    binary_metrics,
    get_metric,
    threshold_metric,
)
from cxrkit.evaluation.multiclass import confusion_matrix, multiclass_metrics, report_from_confusion
from cxrkit.evaluation.multilabel import multilabel_metrics
from cxrkit.evaluation.plots import (
    accuracy_threshold_plot,
    confusion_matrix_plot,
    learning_curve_plot,
    plot_all,
    pr_curve_plot,
    reliability_plot,
    roc_curve_plot,
)
from cxrkit.evaluation.predictions import evaluate_predictions
from cxrkit.evaluation.report import write_report
from cxrkit.evaluation.thresholds import (
    choose_thresholds,
    threshold_for_sensitivity,
    youden_band_threshold,
    youden_threshold,
)
from cxrkit.evaluation.validation import Validation, headline_auroc, validate, without_curves

__all__ = [
    "Validation",
    "headline_auroc",
    "validate",
    "without_curves",
    "THRESHOLD_METRICS",
    "accuracy_threshold_plot",
    "accuracy_vs_threshold",
    "auprc",
    "auroc",
    "binary_metrics",
    "binary_target",
    "bootstrap_ci",
    "bootstrap_samples",
    "calibration_pairs",
    "calibration_report",
    "choose_thresholds",
    "class_indices",
    "confusion_matrix",
    "confusion_matrix_plot",
    "evaluate_predictions",
    "expected_calibration_error",
    "get_metric",
    "learning_curve_plot",
    "multiclass_metrics",
    "multilabel_metrics",
    "plot_all",
    "pr_curve_plot",
    "reliability_data",
    "report_from_confusion",
    "reliability_plot",
    "roc_curve_plot",
    "targets_from_labels",
    "threshold_for_sensitivity",
    "threshold_metric",
    "to_jsonable",
    "write_report",
    "youden_band_threshold",
    "youden_threshold",
]
