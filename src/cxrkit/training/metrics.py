"""Validation and training metrics of the Lightning module, with torchmetrics (accumulated on the device,
synchronised across ranks under DDP). Every rank computes them at the same point (Lightning's epoch-end
logging for training accuracy, the module's validation epoch end for the rest): a collective that only
some ranks reach would hang.

The headline AUROC is the one the evaluation reports (``cxrkit.evaluation``): binary AUROC; multiclass, the mean
of the one-vs-rest AUROCs of the classes present with both outcomes; multilabel, the mean over the labels with
both outcomes. Unknown labels (NaN) are left out (``ignore_index``); an AUROC that is undefined (one class
only) is NaN, never 0.
"""

from __future__ import annotations

import math
import warnings

import torch
from torchmetrics import Metric
from torchmetrics import classification as C

from cxrkit.core.task import LabelSpace, TaskType, label_targets

IGNORE = -1


def metric_targets(labels: torch.Tensor, space: LabelSpace) -> torch.Tensor:
    """Integer targets for torchmetrics from ``label_targets`` (soft targets after mixup rounded), -1 where unknown.

    binary: (N,) the positive column; multiclass: (N,) the class index; multilabel: (N, C).
    """
    target = label_targets(labels, space)
    if space.task is TaskType.MULTICLASS:
        return target
    if space.task is TaskType.BINARY:
        target = target[:, 0]
    out = (torch.nan_to_num(target, nan=0.0) >= 0.5).long()
    out[torch.isnan(target)] = IGNORE
    return out


def metric_inputs(probs: torch.Tensor, labels: torch.Tensor, space: LabelSpace) -> tuple[torch.Tensor, torch.Tensor]:
    """(preds, target) for torchmetrics: ``probs`` from ``logits_to_proba`` (binary: N x 1), ``labels`` the
    batch's label matrix."""
    preds = probs[:, 0] if space.task is TaskType.BINARY else probs
    return preds, metric_targets(labels, space)


def accuracy_metric(space: LabelSpace) -> Metric:
    """Accuracy at 0.5 (binary; multilabel: micro over the known entries) or of the argmax (multiclass)."""
    if space.task is TaskType.BINARY:
        return C.BinaryAccuracy(ignore_index=IGNORE)
    if space.task is TaskType.MULTICLASS:
        return C.MulticlassAccuracy(len(space.classes), average="micro", ignore_index=IGNORE)
    return C.MultilabelAccuracy(len(space.classes), average="micro", ignore_index=IGNORE)


class TaskMetrics(torch.nn.Module):
    """Headline AUROC and accuracy of one task, accumulated over batches (the validation figures)."""

    def __init__(self, space: LabelSpace):
        super().__init__()
        self.space = space
        n = len(space.classes)
        self.accuracy = accuracy_metric(space)
        if space.task is TaskType.BINARY:
            self.auroc, self.stats = C.BinaryAUROC(ignore_index=IGNORE), C.BinaryStatScores(ignore_index=IGNORE)
        elif space.task is TaskType.MULTICLASS:
            kw = {"num_classes": n, "ignore_index": IGNORE, "average": None}
            self.auroc, self.stats = C.MulticlassAUROC(**kw), C.MulticlassStatScores(**kw)
        else:
            kw = {"num_labels": n, "ignore_index": IGNORE, "average": None}
            self.auroc, self.stats = C.MultilabelAUROC(**kw), C.MultilabelStatScores(**kw)

    def update(self, probs: torch.Tensor, labels: torch.Tensor) -> None:
        """``probs`` from ``logits_to_proba`` (binary: N x 1), ``labels`` the batch's label matrix."""
        preds, target = metric_inputs(probs, labels, self.space)
        for metric in (self.accuracy, self.auroc, self.stats):
            metric.update(preds, target)

    def compute(self) -> dict[str, float]:
        """``{"accuracy", "auroc"}`` of everything seen since the last ``reset`` (NaN where undefined)."""
        out = {"accuracy": _value(self.accuracy), "auroc": math.nan}
        if self.stats.update_called:
            tp, fp, tn, fn = self.stats.compute().reshape(-1, 5)[:, :4].T
            defined = (tp + fn > 0) & (tn + fp > 0)  # both outcomes present
            if defined.any():
                with warnings.catch_warnings():  # torchmetrics warns about the undefined ones, left out here
                    warnings.simplefilter("ignore", UserWarning)
                    per_class = self.auroc.compute().reshape(-1)
                out["auroc"] = float(per_class[defined].mean())
        return out

    def reset(self) -> None:
        for metric in (self.accuracy, self.auroc, self.stats):
            metric.reset()


def _value(metric: Metric) -> float:
    if not metric.update_called:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return float(metric.compute())
