"""Small prediction sets for the evaluation tests."""

from __future__ import annotations

import numpy as np
import pytest

from cxrkit.core.task import LabelSpace, TaskType


@pytest.fixture
def binary_space() -> LabelSpace:
    return LabelSpace(TaskType.BINARY, ("normal", "pneumonia"))


@pytest.fixture
def multiclass_space() -> LabelSpace:
    return LabelSpace(TaskType.MULTICLASS, ("normal", "bacterial", "viral"))


@pytest.fixture
def multilabel_space() -> LabelSpace:
    return LabelSpace(TaskType.MULTILABEL, ("effusion", "nodule", "edema"))


@pytest.fixture
def six() -> tuple[np.ndarray, np.ndarray]:
    """Six samples computed by hand in the tests: 3 positives, 3 negatives."""
    y = np.array([1, 1, 1, 0, 0, 0], dtype=float)
    p = np.array([0.9, 0.8, 0.4, 0.6, 0.3, 0.1])
    return y, p
