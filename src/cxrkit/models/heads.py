"""Output conventions shared by deep and classical models.

A model has ``label_space.num_outputs`` outputs: 1 for a binary task (the logit of the positive class
``classes[1]``), C for multiclass (softmax logits) and multilabel (one sigmoid logit per finding).
Probabilities are always returned as an array N x num_outputs, so a binary model gives N x 1;
``class_probabilities`` gives the per-class view (N x C) that predict, explain and timelines show.
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


def num_outputs_of(label_space_or_num_outputs: LabelSpace | int) -> int:
    if isinstance(label_space_or_num_outputs, LabelSpace):
        return label_space_or_num_outputs.num_outputs
    n = int(label_space_or_num_outputs)
    if n < 1:
        raise ConfigError(f"A model needs at least one output, got {n}.")
    return n


def class_probabilities(probs: np.ndarray, label_space: LabelSpace) -> np.ndarray:
    """Model outputs (N x num_outputs) as one probability per class, N x C: a binary model's N x 1
    (the positive class) becomes [1 - p, p]; multiclass and multilabel are unchanged. The dtype is kept."""
    p = np.asarray(probs)
    if not np.issubdtype(p.dtype, np.floating):
        p = p.astype(np.float64)
    if label_space.task is TaskType.BINARY:
        p = p.reshape(len(p), -1)[:, -1]
        return np.stack([1.0 - p, p], axis=1)
    return p
