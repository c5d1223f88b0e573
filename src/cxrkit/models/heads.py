"""Output conventions shared by deep and classical models.

A model has ``label_space.num_outputs`` outputs: 1 for a binary task (the logit of the positive class
``classes[1]``), C for multiclass (softmax logits) and multilabel (one sigmoid logit per finding).
Probabilities are always returned as an array N x num_outputs, so a binary model gives N x 1.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from cxrkit.core.errors import ConfigError
from cxrkit.core.task import LabelSpace, TaskType


def output_layer(model: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """The output layer that maps penultimate features to logits (timm's ``get_classifier``)."""
    if hasattr(model, "get_classifier"):
        return model.get_classifier()
    if hasattr(model, "head"):
        return model.head
    raise ConfigError(f"{type(model).__name__} exposes no output layer (get_classifier/head).")


def logits_to_proba(logits: torch.Tensor, label_space: LabelSpace) -> torch.Tensor:
    """Sigmoid for binary and multilabel, softmax for multiclass."""
    if logits.ndim != 2 or logits.shape[1] != label_space.num_outputs:
        raise ConfigError(
            f"Expected logits of shape (N, {label_space.num_outputs}) for a {label_space.task.value} task, "
            f"got {tuple(logits.shape)}."
        )
    if label_space.task is TaskType.MULTICLASS:
        return torch.softmax(logits.float(), dim=1)
    return torch.sigmoid(logits.float())


def label_targets(labels: np.ndarray, label_space: LabelSpace) -> np.ndarray:
    """Turn an N x C label matrix (1 / 0 / NaN) into per-output targets.

    Returns:
        binary: float N x 1, the positive column (NaN where unknown);
        multiclass: int N, the class index (-1 where no class is marked);
        multilabel: float N x C unchanged (NaN = unknown).
    """
    labels = np.asarray(labels, dtype=np.float32)
    if labels.ndim != 2 or labels.shape[1] != len(label_space.classes):
        raise ConfigError(
            f"Expected a label matrix N x {len(label_space.classes)} ({list(label_space.classes)}), "
            f"got shape {labels.shape}."
        )
    if label_space.task is TaskType.BINARY:
        pos = labels[:, 1].copy()
        neg = labels[:, 0]
        # a row marked only as negative is a known 0
        pos[np.isnan(pos) & (neg == 1)] = 0.0
        return pos[:, None]
    if label_space.task is TaskType.MULTICLASS:
        filled = np.nan_to_num(labels, nan=0.0)
        idx = filled.argmax(axis=1)
        idx[filled.sum(axis=1) == 0] = -1
        return idx.astype(np.int64)
    return labels


def num_outputs_of(label_space_or_num_outputs: LabelSpace | int) -> int:
    if isinstance(label_space_or_num_outputs, LabelSpace):
        return label_space_or_num_outputs.num_outputs
    n = int(label_space_or_num_outputs)
    if n < 1:
        raise ConfigError(f"A model needs at least one output, got {n}.")
    return n
