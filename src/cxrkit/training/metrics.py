"""Validation and training metrics of the Lightning module, with torchmetrics (accumulated on the device,
synchronised across ranks under DDP).

The headline AUROC is the one the evaluation reports (``cxrkit.evaluation``): binary AUROC; multiclass, the mean
of the one-vs-rest AUROCs of the classes present with both outcomes; multilabel, the mean over the labels with
both outcomes. Unknown labels (NaN) are left out (``ignore_index``); an AUROC that is undefined (one class
only) is NaN, never 0.
"""

from __future__ import annotations

import math
import warnings

import torch
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


class TaskMetrics(torch.nn.Module):
    """Headline AUROC and accuracy (0.5 threshold; multiclass argmax) of one task, accumulated over batches."""

    def __init__(self, space: LabelSpace, auroc: bool = True):
        super().__init__()
        self.space = space
        n = len(space.classes)
        if space.task is TaskType.BINARY:
            kw: dict = {"ignore_index": IGNORE}
            self.accuracy = C.BinaryAccuracy(**kw)
            self.auroc = C.BinaryAUROC(**kw) if auroc else None
            self.stats = C.BinaryStatScores(**kw) if auroc else None
        elif space.task is TaskType.MULTICLASS:
            kw = {"num_classes": n, "ignore_index": IGNORE}
            self.accuracy = C.MulticlassAccuracy(average="micro", **kw)
            self.auroc = C.MulticlassAUROC(average=None, **kw) if auroc else None
            self.stats = C.MulticlassStatScores(average=None, **kw) if auroc else None
        else:
            kw = {"num_labels": n, "ignore_index": IGNORE}
            self.accuracy = C.MultilabelAccuracy(average="micro", **kw)
            self.auroc = C.MultilabelAUROC(average=None, **kw) if auroc else None
            self.stats = C.MultilabelStatScores(average=None, **kw) if auroc else None

    def update(self, probs: torch.Tensor, labels: torch.Tensor) -> None:
        """``probs`` from ``logits_to_proba`` (binary: N x 1), ``labels`` the batch's label matrix."""
        preds = probs[:, 0] if self.space.task is TaskType.BINARY else probs
        target = metric_targets(labels, self.space)
        self.accuracy.update(preds, target)
        if self.auroc is not None and self.stats is not None:
            self.auroc.update(preds, target)
            self.stats.update(preds, target)

    def compute(self) -> dict[str, float]:
        """``{"accuracy", "auroc"}`` of everything seen since the last ``reset`` (NaN where undefined)."""
        out = {"accuracy": _value(self.accuracy), "auroc": math.nan}
        if self.auroc is not None and self.stats is not None and self.stats.update_called:
            tp, fp, tn, fn = self.stats.compute().reshape(-1, 5)[:, :4].T
            defined = (tp + fn > 0) & (tn + fp > 0)  # both outcomes present
            if defined.any():
                with warnings.catch_warnings():  # torchmetrics warns about the undefined ones, left out here
                    warnings.simplefilter("ignore", UserWarning)
                    per_class = self.auroc.compute().reshape(-1)
                out["auroc"] = float(per_class[defined].mean())
        return out

    def reset(self) -> None:
        for m in (self.accuracy, self.auroc, self.stats):
            if m is not None:
                m.reset()


def _value(metric: torch.nn.Module) -> float:
    if not metric.update_called:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return float(metric.compute())
