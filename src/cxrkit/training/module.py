"""The LightningModule: any registered model, any task, freeze-then-unfreeze, validation AUROC."""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
import numpy as np
import torch
from timm.utils import ModelEmaV3

from cxrkit.core.task import LabelSpace
from cxrkit.models.heads import logits_to_proba
from cxrkit.models.tta import tta_mean
from cxrkit.training.losses import TaskLoss, distillation_loss, mix_batch
from cxrkit.training.metrics import TaskMetrics, accuracy_metric, metric_inputs
from cxrkit.training.optim import configure
from cxrkit.training.recipe import TrainSpec

log = logging.getLogger(__name__)


class CxrClassifier(L.LightningModule):
    """Wraps a model from ``cxrkit.models.create_model`` for training.

    For ``freeze_epochs`` epochs only the output layer learns (the new head settles without wrecking
    pretrained features); then everything learns, the backbone at ``lr * backbone_lr_scale``.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        label_space: LabelSpace,
        train: TrainSpec,
        class_weights: np.ndarray | None = None,
        augment: torch.nn.Module | None = None,
        teacher: torch.nn.Module | None = None,
        tta: str = "none",
    ):
        super().__init__()
        self.model = model
        self.augment = augment  # BatchAugment: per batch on the training device (augment.on: device)
        self.label_space = label_space
        self.spec = train
        self.tta = tta  # validation scores what inference will compute
        weights = torch.as_tensor(class_weights) if class_weights is not None else None
        self.loss_fn = TaskLoss(label_space, weights, train.label_smoothing)
        self.mixer = _mixer(train)
        # The EMA copy is a submodule: it is saved in checkpoints, validated, and becomes the bundle's model.
        self.ema = ModelEmaV3(model, decay=train.ema, use_warmup=True) if train.ema else None
        self._teacher = [teacher] if teacher is not None else []  # a list: not a submodule, not in checkpoints
        self.train_acc = accuracy_metric(label_space)  # computed and reset by Lightning at each epoch's end
        self.val_metrics = TaskMetrics(label_space)
        self.last_val: dict[str, Any] = {}

    # -- parameters ------------------------------------------------------------------
    def head_parameters(self) -> list[torch.nn.Parameter]:
        head = self.model.get_classifier() if hasattr(self.model, "get_classifier") else None
        if isinstance(head, torch.nn.Module) and any(True for _ in head.parameters()):
            return list(head.parameters())
        params = list(self.model.parameters())
        return params[-2:]  # the last Linear's weight and bias

    def _set_backbone_trainable(self, trainable: bool) -> None:
        head = {id(p) for p in self.head_parameters()}
        for p in self.model.parameters():
            if id(p) not in head:
                p.requires_grad_(trainable)

    def on_train_epoch_start(self) -> None:
        frozen = self.current_epoch < self.spec.freeze_epochs
        self._set_backbone_trainable(not frozen)
        if self.current_epoch in (0, self.spec.freeze_epochs) and self.spec.freeze_epochs:
            log.info("epoch %d: backbone %s", self.current_epoch, "frozen" if frozen else "unfrozen")

    def configure_optimizers(self) -> Any:
        head = {id(p) for p in self.head_parameters()}
        return configure(self.model.named_parameters(), head, self.spec, self.trainer.estimated_stepping_batches)

    # -- steps -----------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    @property
    def final_model(self) -> torch.nn.Module:
        """The network to validate and ship: the EMA weights when ``train.ema`` is on."""
        return self.ema.module if self.ema is not None else self.model

    def on_fit_start(self) -> None:
        for teacher in self._teacher:
            teacher.to(self.device)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.ema is not None:
            self.ema.update(self.model, step=self.global_step)

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.spec.channels_last else x

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        soft = None
        with torch.no_grad():
            if self.augment is not None:
                x = self.augment(x)
            if self.mixer is not None:
                x, y = mix_batch(self.mixer, x, y)
            if self._teacher:
                soft = self._teacher[0](x)
        logits = self(self._prepare(x))
        loss = self.loss_fn(logits, y)
        if soft is not None:
            kd = distillation_loss(logits, soft, self.label_space.task, self.spec.distill_temperature)
            self.log("train_distill_loss", kd, on_step=False, on_epoch=True, batch_size=len(x), sync_dist=True)
            loss = (1 - self.spec.distill_alpha) * loss + self.spec.distill_alpha * kd
        self.train_acc.update(*metric_inputs(logits_to_proba(logits.detach(), self.label_space), y, self.label_space))
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(x), sync_dist=True)
        self.log("train_acc", self.train_acc, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = tta_mean(self.final_model, self._prepare(x), self.tta)
        self.log("val_loss", self.loss_fn(logits, y), on_epoch=True, prog_bar=True, batch_size=len(x), sync_dist=True)
        self.val_metrics.update(logits_to_proba(logits, self.label_space), y)

    def on_validation_epoch_end(self) -> None:
        result = self.val_metrics.compute()  # every rank gets the whole validation set's figures
        self.val_metrics.reset()
        self.last_val = result
        self.log("val_auroc", result["auroc"], prog_bar=True, sync_dist=False)
        self.log("val_acc", result["accuracy"], sync_dist=False)


def _mixer(spec: TrainSpec) -> Any:
    """timm's Mixup for the image side of mixup/cutmix (labels are mixed in ``mix_batch``), or None."""
    if not (spec.mixup or spec.cutmix):
        return None
    from timm.data import Mixup

    return Mixup(mixup_alpha=spec.mixup, cutmix_alpha=spec.cutmix, prob=spec.mix_prob, mode="batch", label_smoothing=0)
