"""The shared conversions in core: labels to targets (numpy and torch alike) and numpy to JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from cxrkit.core.errors import ConfigError
from cxrkit.core.jsonable import json_text, to_jsonable
from cxrkit.core.task import LabelSpace, TaskType, class_index, label_targets

NAN = float("nan")
BINARY = LabelSpace(TaskType.BINARY, ("normal", "pneumonia"))
MULTICLASS = LabelSpace(TaskType.MULTICLASS, ("a", "b", "c"))


@pytest.mark.parametrize("as_array", [np.asarray, torch.tensor], ids=["numpy", "torch"])
def test_label_targets_agree_for_numpy_and_torch(as_array):
    binary = as_array([[1.0, 0.0], [0.0, 1.0], [1.0, NAN], [NAN, NAN]])
    got = np.asarray(label_targets(binary, BINARY))
    assert got.shape == (4, 1)
    assert got[:3, 0].tolist() == [0.0, 1.0, 0.0] and math.isnan(got[3, 0])  # only-negative-marked is a 0
    multi = as_array([[0.0, 0.0, 1.0], [NAN, 1.0, NAN], [0.0, 0.0, 0.0], [NAN, NAN, NAN]])
    assert np.asarray(label_targets(multi, MULTICLASS)).tolist() == [2, 1, -1, -1]
    assert np.asarray(class_index(multi)).tolist() == [2, 1, -1, -1]


def test_label_targets_leave_the_input_alone_and_check_the_shape():
    labels = np.array([[1.0, NAN]], np.float32)
    label_targets(labels, BINARY)
    assert math.isnan(labels[0, 1])
    with pytest.raises(ConfigError, match="N x 3"):
        label_targets(np.zeros((2, 2)), MULTICLASS)


def test_json_helpers_take_numpy_torch_and_paths():
    value = {"a": np.float32(0.5), "b": np.arange(3), "c": torch.tensor([1.0]), "d": np.nan, 1: np.bool_(True)}
    assert to_jsonable(value) == {"a": 0.5, "b": [0, 1, 2], "c": [1.0], "d": None, "1": True}
    assert json.loads(json_text({"p": Path("/x"), "n": np.int64(3)})) == {"p": "/x", "n": 3}
    with pytest.raises(TypeError):
        json_text({"x": object()})
    assert json.loads(json_text({"x": object()}, lenient=True))["x"].startswith("<object")
