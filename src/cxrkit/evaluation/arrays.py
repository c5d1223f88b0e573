"""Input checks and conversions shared by the evaluation modules.

Every public evaluation function takes the dataset label matrix ``y_true`` (N x C of 1 / 0 / NaN) and the
model's probabilities ``probs`` in the shape the label space implies:

- binary: ``probs`` is (N,) or (N, 1), the probability of ``classes[1]``; ``y_true`` is N x 2 one-hot
  ``[negative, positive]`` (a 0/1 vector of the positive class is accepted too).
- multiclass: ``probs`` is N x C softmax; ``y_true`` is N x C one-hot (a vector of class indices is accepted).
- multilabel: ``probs`` is N x C independent sigmoids; ``y_true`` is N x C with NaN = unknown.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cxrkit.core.errors import ConfigError, DataFormatError
from cxrkit.core.task import LabelSpace, TaskType, class_index, positive_target

# Probabilities this far outside [0, 1] are float noise and are clipped; anything further is an error.
_PROB_TOL = 1e-6
# Softmax rows must sum to 1 within this tolerance (float32 outputs drift by ~1e-6 per class).
_SUM_TOL = 1e-3


def check_label_space(label_space: Any) -> LabelSpace:
    """Return ``label_space`` if it is a :class:`LabelSpace`, else raise :class:`ConfigError`."""
    if not isinstance(label_space, LabelSpace):
        raise ConfigError(
            f"label_space must be a cxrkit.core.LabelSpace, got {type(label_space).__name__}; "
            "build one with LabelSpace(TaskType.BINARY, ('normal', 'pneumonia'))."
        )
    return label_space


def _shape(a: np.ndarray) -> str:
    return "(" + ", ".join(str(s) for s in a.shape) + ")"


def check_probs(label_space: LabelSpace, probs: Any) -> np.ndarray:
    """Validate model probabilities and return them as float64: (N,) for binary, N x C otherwise.

    Raises:
        DataFormatError: wrong shape, non-finite values, values outside [0, 1], or softmax rows that do not sum to 1.
    """
    label_space = check_label_space(label_space)
    p = np.asarray(probs, dtype=np.float64)
    task = label_space.task
    n_cls = len(label_space.classes)
    if task is TaskType.BINARY:
        if p.ndim == 2 and p.shape[1] == 1:
            p = p[:, 0]
        elif p.ndim == 2 and p.shape[1] == 2:
            raise DataFormatError(
                f"Binary probs have shape {_shape(p)}; a binary model gives ONE probability per row, that of "
                f"{label_space.classes[1]!r}. Pass probs[:, 1] if these are two-class softmax outputs."
            )
        if p.ndim != 1:
            raise DataFormatError(f"Binary probs must have shape (N,) or (N, 1), got {_shape(p)}.")
    elif p.ndim != 2 or p.shape[1] != n_cls:
        raise DataFormatError(
            f"{task.value} probs must have shape (N, {n_cls}) for classes {list(label_space.classes)}, got {_shape(p)}."
        )
    if p.shape[0] == 0:
        raise DataFormatError("probs is empty: there is nothing to evaluate.")
    if not np.isfinite(p).all():
        bad = int((~np.isfinite(p)).sum())
        raise DataFormatError(f"probs contain {bad} NaN or infinite value(s); a model must score every image.")
    lo, hi = float(p.min()), float(p.max())
    if lo < -_PROB_TOL or hi > 1 + _PROB_TOL:
        raise DataFormatError(
            f"probs must lie in [0, 1], got values in [{lo:.4g}, {hi:.4g}]; these look like logits: "
            "apply a sigmoid (binary, multilabel) or softmax (multiclass) first."
        )
    p = np.clip(p, 0.0, 1.0)
    if task is TaskType.MULTICLASS:
        sums = p.sum(axis=1)
        worst = int(np.argmax(np.abs(sums - 1.0)))
        if abs(sums[worst] - 1.0) > _SUM_TOL:
            raise DataFormatError(
                f"Multiclass probs must be softmax rows summing to 1; row {worst} sums to {sums[worst]:.4g}. "
                "Apply a softmax over the class axis, or use task 'multilabel' for independent findings."
            )
    return p


def check_y_true(label_space: LabelSpace, y_true: Any) -> np.ndarray:
    """Validate the label matrix and return it as float64 N x C (N x 2 for binary).

    A binary 0/1 vector becomes ``[1 - y, y]``; a multiclass index vector becomes one-hot.

    Raises:
        DataFormatError: wrong shape or values other than 1, 0 and NaN.
    """
    label_space = check_label_space(label_space)
    y = np.asarray(y_true, dtype=np.float64)
    n_cls = len(label_space.classes)
    task = label_space.task
    if y.ndim == 2 and y.shape[1] == 1 and n_cls != 1:
        y = y[:, 0]
    if y.ndim == 1 and task is TaskType.BINARY:
        y = np.stack([1.0 - y, y], axis=1)
    elif y.ndim == 1 and task is TaskType.MULTICLASS:
        if np.isnan(y).any() or not np.isin(y, np.arange(n_cls)).all():
            raise DataFormatError(
                f"A multiclass label vector must hold class indices 0..{n_cls - 1}, "
                f"got values {sorted(set(np.unique(y[np.isfinite(y)]).tolist()))[:10]}."
            )
        y = np.eye(n_cls)[y.astype(int)]
    if y.ndim != 2 or y.shape[1] != n_cls:
        raise DataFormatError(
            f"y_true must be the N x {n_cls} label matrix for classes {list(label_space.classes)}, "
            f"got shape {_shape(y)}."
        )
    finite = y[np.isfinite(y)]
    if finite.size and not np.isin(finite, (0.0, 1.0)).all():
        bad = sorted(set(np.unique(finite[~np.isin(finite, (0.0, 1.0))]).tolist()))[:5]
        raise DataFormatError(f"y_true must hold only 1, 0 or NaN (unknown), found {bad}.")
    if np.isinf(y).any():
        raise DataFormatError("y_true holds infinite values; use 1, 0 or NaN (unknown).")
    return y


def binary_target(y_true: Any) -> np.ndarray:
    """Positive-class target vector (N,) of 1 / 0 / NaN from a binary N x 2 label matrix (as training sees it:
    0 where only the negative class is marked; see :func:`cxrkit.core.task.positive_target`).

    Column 1 is the positive class. A 1-D 0/1 vector is returned unchanged (as float64).

    Raises:
        DataFormatError: the matrix is not N x 2, or a fully known row is not one-hot.
    """
    y = np.asarray(y_true, dtype=np.float64)
    if y.ndim == 1:
        return y
    if y.ndim != 2 or y.shape[1] != 2:
        raise DataFormatError(f"A binary label matrix must be N x 2 [negative, positive], got shape {_shape(y)}.")
    known = np.isfinite(y).all(axis=1)
    bad = np.flatnonzero(known & (y.sum(axis=1) != 1))
    if bad.size:
        raise DataFormatError(
            f"Binary label row {int(bad[0])} is {y[bad[0]].tolist()}, not one-hot; "
            "each image must be exactly one of [negative, positive]."
        )
    return positive_target(y)[:, 0]


def class_indices(y_true: Any) -> np.ndarray:
    """Class index vector (N,) of int from a one-hot N x C label matrix (multiclass).

    Raises:
        DataFormatError: a row has a NaN, or not exactly one 1.
    """
    y = np.asarray(y_true, dtype=np.float64)
    if y.ndim != 2:
        raise DataFormatError(f"A multiclass label matrix must be N x C one-hot, got shape {_shape(y)}.")
    ok = np.isfinite(y).all(axis=1) & (np.nan_to_num(y).sum(axis=1) == 1)
    bad = np.flatnonzero(~ok)
    if bad.size:
        raise DataFormatError(
            f"{bad.size} multiclass label row(s) are not one-hot (first: row {int(bad[0])} = {y[bad[0]].tolist()}); "
            "every image needs exactly one known class. Drop unlabelled rows before evaluating."
        )
    return class_index(y)


def targets_from_labels(label_space: LabelSpace, y_true: Any) -> np.ndarray:
    """Task-specific target: binary -> (N,) 1/0/NaN, multiclass -> (N,) int indices, multilabel -> N x C."""
    y = check_y_true(label_space, y_true)
    if label_space.task is TaskType.BINARY:
        return binary_target(y)
    if label_space.task is TaskType.MULTICLASS:
        return class_indices(y)
    return y


def check_pair(label_space: LabelSpace, y_true: Any, probs: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate both arrays and return ``(targets_from_labels(...), check_probs(...))`` with equal N."""
    p = check_probs(label_space, probs)
    y = targets_from_labels(label_space, y_true)
    if y.shape[0] != p.shape[0]:
        raise DataFormatError(
            f"y_true has {y.shape[0]} rows but probs has {p.shape[0]}; they must be row-aligned (same images)."
        )
    return y, p


def check_binary_arrays(y: Any, p: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate a 1-D 0/1 target (no NaN) and a 1-D probability vector of the same length."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    if p.ndim == 2 and p.shape[1] == 1:
        p = p[:, 0]
    if y.ndim != 1 or p.ndim != 1 or y.shape != p.shape:
        raise DataFormatError(
            f"y and p must be 1-D and of equal length, got shapes {_shape(y)} and {_shape(p)}; "
            "for a label matrix use binary_target(y_true) first."
        )
    if y.size == 0:
        raise DataFormatError("y and p are empty: there is nothing to evaluate.")
    if not np.isin(y, (0.0, 1.0)).all():
        raise DataFormatError(
            "y must hold only 0 and 1; mask out unknown (NaN) labels first, e.g. keep = ~np.isnan(y)."
        )
    if not np.isfinite(p).all() or p.min() < -_PROB_TOL or p.max() > 1 + _PROB_TOL:
        raise DataFormatError(
            f"p must be finite probabilities in [0, 1], got range [{np.nanmin(p):.4g}, {np.nanmax(p):.4g}]; "
            "apply a sigmoid to logits first."
        )
    return y, np.clip(p, 0.0, 1.0)


def check_threshold(threshold: Any, name: str = "threshold") -> float:
    """Return ``threshold`` as a float in [0, 1] or raise :class:`ConfigError`."""
    try:
        t = float(threshold)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number in [0, 1], got {threshold!r}.") from None
    if not 0.0 <= t <= 1.0:
        raise ConfigError(f"{name} must be in [0, 1], got {t}; predictions are positive when prob >= {name}.")
    return t
