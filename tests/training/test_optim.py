"""The optimizer (timm's create_optimizer_v2) and the schedule keep the recipe's semantics."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from cxrkit.core.task import LabelSpace, TaskType
from cxrkit.models import create_model
from cxrkit.training.module import CxrClassifier
from cxrkit.training.optim import build_scheduler, configure
from cxrkit.training.recipe import TrainSpec

BINARY = LabelSpace(TaskType.BINARY, ("NORMAL", "PNEUMONIA"))


def _optimizer(spec: TrainSpec, arch: str = "small_cnn") -> tuple[torch.optim.Optimizer, CxrClassifier]:
    module = CxrClassifier(create_model(arch, BINARY, weights="none", image_size=32), BINARY, spec)
    head = {id(p) for p in module.head_parameters()}
    out = configure(module.model.named_parameters(), head, spec, total_steps=100)
    return (out["optimizer"] if isinstance(out, dict) else out), module


def test_no_weight_decay_on_norm_layers_and_biases():
    opt, module = _optimizer(TrainSpec(weight_decay=0.05, freeze_epochs=1, backbone_lr_scale=0.3), "resnet18")
    decay_of = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    names = dict(module.model.named_parameters())
    assert len(decay_of) == len(names)  # every parameter is in exactly one group
    norms = {
        id(p)
        for m in module.model.modules()
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
        for p in m.parameters()
    }
    assert norms, "the test model must have norm layers"
    for name, p in names.items():
        expected = 0.0 if (id(p) in norms or name.endswith(".bias")) else 0.05
        assert decay_of[id(p)] == expected, name


def test_head_and_backbone_learning_rates():
    opt, module = _optimizer(TrainSpec(lr=0.01, freeze_epochs=1, backbone_lr_scale=0.3, scheduler="none"))
    head = {id(p) for p in module.head_parameters()}
    for g in opt.param_groups:
        in_head = {id(p) in head for p in g["params"]}
        assert len(in_head) == 1
        assert g["lr"] == pytest.approx(0.01 if in_head.pop() else 0.003)
    # Without a frozen phase the backbone learns at the full rate.
    opt, _ = _optimizer(TrainSpec(lr=0.01, freeze_epochs=0, backbone_lr_scale=0.3, scheduler="none"))
    assert {g["lr"] for g in opt.param_groups} == {0.01}


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("adamw", torch.optim.AdamW),
        ("adam", torch.optim.Adam),
        ("rmsprop", torch.optim.RMSprop),
        ("sgd", torch.optim.SGD),
    ],
)
def test_each_recipe_optimizer(name, cls):
    opt, _ = _optimizer(TrainSpec(optimizer=name, scheduler="none"))
    assert type(opt) is cls
    if name == "sgd":
        assert opt.defaults["nesterov"] and opt.defaults["momentum"] == 0.9
    if name == "rmsprop":  # torch's defaults, as the recipes were tuned with
        assert opt.defaults["alpha"] == 0.99 and opt.defaults["momentum"] == 0.0


def test_warmup_then_cosine_per_step():
    spec = TrainSpec(lr=1e-3, epochs=5, warmup_epochs=1.0)
    p = torch.nn.Parameter(torch.zeros(2, 2))
    opt = torch.optim.SGD([p], lr=1e-3)
    sched = build_scheduler(opt, spec, total_steps=100)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"] / 1e-3)
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(1 / 21) and lrs[10] == pytest.approx(11 / 21)  # linear warm-up over 20 steps
    assert lrs[20] == pytest.approx(1.0)
    assert lrs[60] == pytest.approx(0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * 40 / 80)), abs=1e-6)
    assert 0.01 <= lrs[-1] < 0.012 and all(a >= b for a, b in itertools.pairwise(lrs[20:]))
    assert build_scheduler(opt, TrainSpec(scheduler="none"), 100) is None
