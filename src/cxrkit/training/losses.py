"""Task losses with unknown labels (NaN) masked out and class weights for imbalance."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cxrkit.core.task import LabelSpace, TaskType


class TaskLoss(torch.nn.Module):
    """Binary: BCE on the positive column; multiclass: cross-entropy; multilabel: per-finding BCE.

    ``weights`` come from ``cxrkit.data.class_weights``: the positive weight(s) for binary and
    multilabel, per-class weights for multiclass. Rows or entries with NaN labels add no loss.
    """

    def __init__(self, label_space: LabelSpace, weights: torch.Tensor | None = None, label_smoothing: float = 0.0):
        super().__init__()
        self.label_space = label_space
        self.label_smoothing = float(label_smoothing)
        self.register_buffer("weights", weights.float() if weights is not None else None, persistent=False)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        task = self.label_space.task
        logits = logits.float()
        if task is TaskType.MULTICLASS:
            filled = torch.nan_to_num(labels, nan=0.0)
            target = filled.argmax(dim=1)
            target[filled.sum(dim=1) == 0] = -100  # ignore_index: no class known
            if (target == -100).all():
                return logits.sum() * 0.0
            return F.cross_entropy(
                logits, target, weight=self.weights, ignore_index=-100, label_smoothing=self.label_smoothing
            )
        if task is TaskType.BINARY:
            target = labels[:, 1:2].clone()
            target[torch.isnan(target) & (labels[:, 0:1] == 1)] = 0.0
        else:
            target = labels
        mask = ~torch.isnan(target)
        if not mask.any():
            return logits.sum() * 0.0
        safe = torch.nan_to_num(target, nan=0.0)
        if self.label_smoothing:
            safe = safe * (1 - self.label_smoothing) + 0.5 * self.label_smoothing
        per_entry = F.binary_cross_entropy_with_logits(logits, safe, pos_weight=self.weights, reduction="none")
        return (per_entry * mask).sum() / mask.sum()
