from __future__ import annotations

import math

import pytest
import torch

from cxrkit.core.errors import ConfigError
from cxrkit.core.task import LabelSpace, TaskType
from cxrkit.training.losses import TaskLoss
from cxrkit.training.recipe import apply_overrides, load_recipe


def test_recipe_file_and_overrides(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("data: {sources: [a]}\ntrain: {epochs: 3, lr: 0.01}\n")
    r = load_recipe(p, ["train.epochs=5", "model.arch=resnet18", "augment.enabled=false", "data.per_class=null"])
    assert r.name == "r" and r.train.epochs == 5 and r.train.lr == 0.01
    assert r.model.arch == "resnet18" and r.augment.enabled is False and r.data.per_class is None
    assert str(r.out_dir) == "runs/r"


def test_recipe_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"Unknown recipe key\(s\) \['train.epoch'\]"):
        load_recipe(None, ["data.sources=[a]", "train.epoch=3"])
    with pytest.raises(ConfigError, match="names no data"):
        load_recipe(None, [])
    with pytest.raises(ConfigError, match=r"needs threshold\.target_sensitivity"):
        load_recipe(None, ["data.sources=[a]", "threshold.method=sensitivity"])
    with pytest.raises(ConfigError, match="no such recipe file"):
        load_recipe(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides({}, ["justakey"])


def test_binary_loss_masks_unknown_and_weights_positives():
    space = LabelSpace(TaskType.BINARY, ("NORMAL", "PNEUMONIA"))
    logits = torch.tensor([[2.0], [-1.0], [5.0]])
    labels = torch.tensor([[0.0, 1.0], [1.0, 0.0], [math.nan, math.nan]])
    loss = TaskLoss(space)(logits, labels)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits[:2], torch.tensor([[1.0], [0.0]]))
    assert torch.allclose(loss, expected)
    weighted = TaskLoss(space, torch.tensor([3.0]))(logits[:2], labels[:2])
    manual = (3 * torch.nn.functional.softplus(-logits[0]) + torch.nn.functional.softplus(logits[1])).sum() / 2
    assert torch.allclose(weighted, manual)


def test_multilabel_loss_ignores_nan_entries():
    space = LabelSpace(TaskType.MULTILABEL, ("A", "B"))
    logits = torch.tensor([[1.0, -3.0], [0.5, 9.0]])
    labels = torch.tensor([[1.0, math.nan], [0.0, math.nan]])
    loss = TaskLoss(space)(logits, labels)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits[:, 0], labels[:, 0])
    assert torch.allclose(loss, expected)  # column B's extreme logit adds nothing


def test_multiclass_loss_ignores_unlabelled_rows():
    space = LabelSpace(TaskType.MULTICLASS, ("A", "B", "C"))
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 9.0]])
    labels = torch.tensor([[1.0, 0.0, 0.0], [math.nan, math.nan, math.nan]])
    loss = TaskLoss(space)(logits, labels)
    assert torch.allclose(loss, torch.nn.functional.cross_entropy(logits[:1], torch.tensor([0])))


def test_empty_exclusive_classes_are_dropped_and_two_left_make_a_binary_task():
    import numpy as np
    import pandas as pd

    from cxrkit.core.task import LabelSpace, TaskType
    from cxrkit.data.table import CxrTable
    from cxrkit.training.data_prep import drop_empty_classes

    space = LabelSpace(TaskType.MULTICLASS, ("NORMAL", "PNEUMONIA", "COVID-19"))
    labels = np.array([[1, 0, 0], [0, 0, 1], [0, 0, 1]], np.float32)  # no PNEUMONIA image
    table = CxrTable(pd.DataFrame({"path": ["a", "b", "c"]}), labels, space)
    out = drop_empty_classes(table)
    assert out.label_space == LabelSpace(TaskType.BINARY, ("NORMAL", "COVID-19"))
    assert out.labels.tolist() == [[1, 0], [0, 1], [0, 1]]
    full = CxrTable(pd.DataFrame({"path": ["a", "b", "c"]}), np.eye(3, dtype=np.float32), space)
    assert drop_empty_classes(full).label_space == space  # nothing to drop
