"""Task losses with unknown labels (NaN) masked out and class weights for imbalance."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cxrkit.core.task import LabelSpace, TaskType, class_index, label_targets


class TaskLoss(torch.nn.Module):
    """Binary: BCE on the positive column; multiclass: cross-entropy; multilabel: per-finding BCE.

    ``weights`` come from ``cxrkit.data.class_weights``: the positive weight(s) for binary and
    multilabel, per-class weights for multiclass. Rows or entries with NaN labels add no loss.
    Soft targets (mixup/cutmix mixes of two rows) are used as given: BCE against the mixed value, and
    cross-entropy against the mixed class probabilities.
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
            if ((labels > 0) & (labels < 1)).any():  # soft targets (mixup/cutmix): probabilities per class
                known = ~torch.isnan(labels).any(dim=1) & (torch.nan_to_num(labels).sum(dim=1) > 0)
                if not known.any():
                    return logits.sum() * 0.0
                return F.cross_entropy(
                    logits[known], labels[known], weight=self.weights, label_smoothing=self.label_smoothing
                )
            target = class_index(labels)  # -1 where no class is known: ignored
            if (target == -1).all():
                return logits.sum() * 0.0
            return F.cross_entropy(
                logits, target, weight=self.weights, ignore_index=-1, label_smoothing=self.label_smoothing
            )
        target = label_targets(labels, self.label_space)
        mask = ~torch.isnan(target)
        if not mask.any():
            return logits.sum() * 0.0
        safe = torch.nan_to_num(target, nan=0.0)
        if self.label_smoothing:
            safe = safe * (1 - self.label_smoothing) + 0.5 * self.label_smoothing
        per_entry = F.binary_cross_entropy_with_logits(logits, safe, pos_weight=self.weights, reduction="none")
        return (per_entry * mask).sum() / mask.sum()


def mix_batch(mixer, x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup/cutmix a batch with timm's ``Mixup`` (images in place) and mix the labels with NaN kept.

    Each image is mixed with the batch's mirror order (``mode="batch"``); the label of a mixed pair is
    ``lam * y + (1 - lam) * y_partner``. A NaN (finding not labelled by the image's source) in either image
    stays NaN, so the masked loss leaves that entry out rather than inventing a label for it.
    """
    lam = float(mixer._mix_batch(x))  # timm: draws mixup vs cutmix, mixes x in place, lam corrected for the box
    if lam == 1.0:
        return x, labels
    return x, lam * labels + (1.0 - lam) * labels.flip(0)


def distillation_loss(
    student_logits: torch.Tensor, teacher_probs: torch.Tensor, task: TaskType, temperature: float = 1.0
) -> torch.Tensor:
    """Soft-target loss against an ensemble's probabilities (computed at the same ``temperature``).

    Binary and multi-label: BCE per output against the teacher's sigmoid, over every finding (also those
    the image's source does not label: that is knowledge the labels lack). Multiclass: KL divergence of
    the softmaxes. Scaled by T^2 so that gradients keep their size as T changes (Hinton et al. 2015).
    """
    t = float(temperature)
    s = student_logits.float() / t
    if task is TaskType.MULTICLASS:
        loss = F.kl_div(F.log_softmax(s, dim=1), teacher_probs.float(), reduction="batchmean")
    else:
        loss = F.binary_cross_entropy_with_logits(s, teacher_probs.float())
    return loss * t * t
