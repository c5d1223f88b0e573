"""Optimizer and learning-rate schedule of a recipe's ``train`` section, built by timm and torch.

The optimizer is timm's ``create_optimizer_v2`` (adamw, adam, rmsprop, sgd with Nesterov momentum) over
parameter groups that keep the recipe's semantics: the new head learns at ``lr``, the backbone at
``lr * backbone_lr_scale`` when the recipe freezes it first (``freeze_epochs``), and ``weight_decay`` applies
to weights only, never to norm layers or biases (timm's rule: 1-d parameters and ``*.bias``). The schedule is
torch's linear warm-up then cosine decay to 1% of the backbone's learning rate, stepped every batch.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from timm.optim import create_optimizer_v2

from cxrkit.training.recipe import TrainSpec

FINAL_LR_FRACTION = 0.01  # cosine decays to this fraction of the smallest group learning rate


def no_weight_decay(name: str, param: torch.nn.Parameter) -> bool:
    """timm's rule: norm weights, biases and other 1-d parameters are not decayed."""
    return param.ndim <= 1 or name.endswith(".bias")


def param_groups(
    named: Iterable[tuple[str, torch.nn.Parameter]], head: set[int], spec: TrainSpec
) -> list[dict[str, Any]]:
    """Head and backbone groups (by ``id`` in ``head``), each split into decayed and not decayed parameters."""
    backbone_lr = spec.lr * (spec.backbone_lr_scale if spec.freeze_epochs else 1.0)
    buckets: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for name, p in named:
        buckets.setdefault((id(p) in head, no_weight_decay(name, p)), []).append(p)
    order = [(True, False), (True, True), (False, False), (False, True)]  # stable group order in checkpoints
    return [
        {
            "params": buckets[key],
            "lr": spec.lr if key[0] else backbone_lr,
            "weight_decay": 0.0 if key[1] else spec.weight_decay,
        }
        for key in order
        if buckets.get(key)
    ]


def build_optimizer(groups: list[dict[str, Any]], spec: TrainSpec) -> torch.optim.Optimizer:
    """timm's optimizer named by ``spec.optimizer`` over ``groups`` (their lr and weight decay win)."""
    extra: dict[str, Any] = {}
    if spec.optimizer == "rmsprop":  # torch's RMSprop defaults, as before (timm's are TensorFlow's)
        extra = {"momentum": 0.0, "alpha": 0.99}
    return create_optimizer_v2(groups, opt=spec.optimizer, lr=spec.lr, weight_decay=spec.weight_decay, **extra)


def build_scheduler(
    optimizer: torch.optim.Optimizer, spec: TrainSpec, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """Per-step linear warm-up (``warmup_epochs`` of the ``epochs``), then cosine to 1% of the smallest group lr;
    None when ``spec.scheduler`` is ``none``."""
    if spec.scheduler != "cosine":
        return None
    total = max(1, int(total_steps))
    warm = min(total - 1, int(total * spec.warmup_epochs / max(1, spec.epochs)))
    sched = torch.optim.lr_scheduler
    # torch's eta_min is one number for every group: 1% of the smallest (the backbone's) learning rate.
    floor = FINAL_LR_FRACTION * min(g["lr"] for g in optimizer.param_groups)
    cosine = sched.CosineAnnealingLR(optimizer, T_max=max(1, total - warm), eta_min=floor)
    return (
        cosine
        if warm <= 0
        else sched.SequentialLR(
            optimizer, [sched.LinearLR(optimizer, 1.0 / (warm + 1), 1.0, total_iters=warm), cosine], milestones=[warm]
        )
    )


def configure(
    named: Iterable[tuple[str, torch.nn.Parameter]], head: set[int], spec: TrainSpec, total_steps: int
) -> Any:
    """What a LightningModule's ``configure_optimizers`` returns: the optimizer and its per-step schedule."""
    optimizer = build_optimizer(param_groups(named, head, spec), spec)
    scheduler = build_scheduler(optimizer, spec, total_steps)
    if scheduler is None:
        return optimizer
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
