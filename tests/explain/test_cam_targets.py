"""CAM targets are pytorch-grad-cam's own (utils.model_targets), scoring the right logit per head."""

from __future__ import annotations

import torch
from pytorch_grad_cam.utils.model_targets import BinaryClassifierOutputTarget, ClassifierOutputTarget

from cxrkit.core.task import LabelSpace, TaskType
from cxrkit.explain.cam import cam_target


def test_binary_targets_are_the_logit_and_its_negation():
    space = LabelSpace(TaskType.BINARY, ("NORMAL", "PNEUMONIA"))
    z = torch.tensor([1.5])  # one image's output row: the positive class's logit
    positive, negative = cam_target(space, 1), cam_target(space, 0)
    assert isinstance(positive, BinaryClassifierOutputTarget) and isinstance(negative, BinaryClassifierOutputTarget)
    assert float(positive(z)) == 1.5 and float(negative(z)) == -1.5  # sigmoid(-z) = 1 - sigmoid(z)


def test_multiclass_and_multilabel_targets_pick_one_logit():
    row = torch.tensor([0.1, 2.0, -3.0])
    for task in (TaskType.MULTICLASS, TaskType.MULTILABEL):
        target = cam_target(LabelSpace(task, ("A", "B", "C")), 2)
        assert isinstance(target, ClassifierOutputTarget) and float(target(row)) == -3.0
