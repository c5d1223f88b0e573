"""The one rule that turns probabilities into decisions at a bundle's thresholds, for every task.

- binary: the positive class when its probability reaches its threshold (0.5 when none is stored);
- multilabel: every finding whose probability reaches its own threshold;
- multiclass: the arg-max, unless the thresholds name an *operating class*: that class whenever its probability
  reaches its threshold (a one-vs-rest operating point, e.g. COVID-19 at sensitivity 0.85 chosen on
  out-of-source validation), else the most probable of the other classes. So the operating class's sensitivity
  and specificity are exactly those of its one-vs-rest probability at that threshold, as a paper reports them.

Prediction, evaluation, per-group tables, the bf16/INT8 agreement checks and Grad-CAM's default class all call
:func:`decide`, so they cannot disagree on what a model "said".
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from cxrkit.core.errors import ConfigError
from cxrkit.core.task import LabelSpace, TaskType

DEFAULT_THRESHOLD = 0.5


def check_operating_class(space: LabelSpace, name: str) -> int:
    """The column of ``name``, a multiclass model's operating class.

    Raises:
        ConfigError: the task is not multiclass (binary and multi-label outputs have their own thresholds).
        UnknownNameError: no such class; the message lists the classes.
    """
    if space.task is not TaskType.MULTICLASS:
        raise ConfigError(
            f"An operating class is for multiclass models; this one is {space.task.value}, whose thresholds are "
            "per output already. Fix: drop the operating class (threshold.operating_class)."
        )
    return space.index(name)


def multiclass_thresholds(raw: Any, space: LabelSpace) -> dict[str, float]:
    """A multiclass model's thresholds: ``{}`` (arg-max) or ``{operating class: threshold}``.

    ``raw`` is None, a mapping, or an empty sequence (no threshold). Bundles written before operating points
    listed every class at 0.5, which meant arg-max; they read as ``{}``.

    Raises:
        ConfigError: a non-empty list or a number (which class would it be for?), more than one class, an unknown
            class, or a value that is not a probability.
    """
    if raw is not None and not isinstance(raw, Mapping) and len(np.ravel(raw)):
        raise ConfigError(
            "A multiclass model's thresholds name their class: none for the arg-max, or {operating class: "
            f"threshold}}, e.g. {{'COVID-19': 0.3}}; got {raw!r}."
        )
    if not raw:
        return {}
    values = {space.classes[space.index(str(k))]: float(v) for k, v in raw.items()}
    if len(values) == len(space.classes) and all(v == DEFAULT_THRESHOLD for v in values.values()):
        return {}
    bad = {k: v for k, v in values.items() if not (math.isfinite(v) and 0.0 <= v <= 1.0)}
    if bad:
        raise ConfigError(f"Thresholds must be probabilities in [0, 1]; got {bad}.")
    if len(values) > 1:
        raise ConfigError(
            f"A multiclass model takes at most one threshold, for its operating class; got {values}. "
            f"Fix: keep the one class the operating point is for, e.g. {{{next(iter(values))!r}: ...}}, "
            "or none for the arg-max."
        )
    return values


def operating_point(space: LabelSpace, thresholds: Mapping[str, float] | None) -> tuple[int, float] | None:
    """(column, threshold) of a multiclass model's operating class, or None (arg-max; other tasks)."""
    if space.task is not TaskType.MULTICLASS:
        return None
    chosen = multiclass_thresholds(thresholds, space)
    if not chosen:
        return None
    ((name, value),) = chosen.items()
    return space.index(name), value


def decide(space: LabelSpace, probs: Any, thresholds: Mapping[str, float] | None = None) -> np.ndarray:
    """Decisions for probability rows at ``thresholds`` (``{class: probability}``, a bundle's form).

    Args:
        probs: N x C (binary: N x 2, or the positive class's N probabilities).

    Returns:
        binary and multiclass: N class indices; multilabel: N x C booleans.
    """
    p = np.asarray(probs, dtype=np.float64)
    t = dict(thresholds or {})
    if space.task is TaskType.BINARY:
        positive = p.reshape(len(p), -1)[:, -1]
        return (positive >= t.get(space.positive, DEFAULT_THRESHOLD)).astype(np.int64)
    if space.task is TaskType.MULTILABEL:
        return p >= np.array([t.get(c, DEFAULT_THRESHOLD) for c in space.classes])
    point = operating_point(space, t)
    if point is None:
        return p.argmax(axis=1)
    column, value = point
    others = p.copy()
    others[:, column] = -np.inf
    return np.where(p[:, column] >= value, column, others.argmax(axis=1))


def decision_matrix(space: LabelSpace, probs: Any, thresholds: Mapping[str, float] | None = None) -> np.ndarray:
    """:func:`decide` as N x C booleans (one-hot for the exclusive tasks), to compare two models' calls."""
    d = decide(space, probs, thresholds)
    return d if d.ndim == 2 else np.eye(len(space.classes), dtype=bool)[d]
