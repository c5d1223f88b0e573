"""The Lightning module's torchmetrics give the evaluation's headline AUROC and accuracy, NaN labels left out."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cxrkit.core.task import LabelSpace, TaskType
from cxrkit.evaluation import evaluate_predictions, headline_auroc
from cxrkit.training.metrics import TaskMetrics


def _case(task: TaskType, rng: np.random.Generator, n: int = 120) -> tuple[LabelSpace, np.ndarray, np.ndarray]:
    if task is TaskType.BINARY:
        space = LabelSpace(task, ("NORMAL", "PNEUMONIA"))
        k = rng.integers(0, 2, n)
        return space, np.eye(2)[k], (rng.random(n) * 0.7 + 0.3 * k)[:, None]
    if task is TaskType.MULTICLASS:
        space = LabelSpace(task, ("A", "B", "C", "D"))
        k = rng.integers(0, 3, n)  # class D never occurs: its AUROC is undefined and left out
        p = rng.random((n, 4)) + 0.6 * np.eye(4)[k]
        return space, np.eye(4)[k], p / p.sum(1, keepdims=True)
    space = LabelSpace(task, ("A", "B", "C"))
    y = (rng.random((n, 3)) < 0.3).astype(float)
    y[:, 2] = 0.0  # C has no positive: undefined, left out (not counted as 0)
    y[rng.random((n, 3)) < 0.2] = np.nan  # findings a source does not label
    return space, y, np.clip(np.nan_to_num(y, nan=0.5) * 0.3 + rng.random((n, 3)) * 0.7, 0, 1)


@pytest.mark.parametrize("task", list(TaskType))
def test_headline_auroc_and_accuracy_match_the_evaluation(task):
    space, y, p = _case(task, np.random.default_rng(1))
    metrics = TaskMetrics(space)
    for rows in np.array_split(np.arange(len(y)), 4):  # accumulated over batches
        metrics.update(torch.tensor(p[rows], dtype=torch.float32), torch.tensor(y[rows], dtype=torch.float32))
    got = metrics.compute()
    result = evaluate_predictions(space, y, p, n_boot=0)
    assert got["auroc"] == pytest.approx(headline_auroc(result), abs=1e-5)
    if task is TaskType.MULTILABEL:  # micro accuracy over the known entries at 0.5
        known = ~np.isnan(y)
        assert got["accuracy"] == pytest.approx(((p >= 0.5) == (y == 1))[known].mean(), abs=1e-6)
    else:
        assert got["accuracy"] == pytest.approx(result["accuracy"], abs=1e-6)
    metrics.reset()
    assert math.isnan(metrics.compute()["auroc"])


def test_one_class_only_gives_nan_not_zero():
    space = LabelSpace(TaskType.BINARY, ("NORMAL", "PNEUMONIA"))
    metrics = TaskMetrics(space)
    metrics.update(torch.tensor([[0.2], [0.9]]), torch.tensor([[0.0, 1.0], [0.0, 1.0]]))
    assert math.isnan(metrics.compute()["auroc"])
