"""Task types and label spaces shared by data, models and evaluation."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from cxrkit.core.errors import ConfigError, UnknownNameError

# Names that mean "no disease"; in a binary task such a class is the negative one.
NEGATIVE_NAMES = {"normal", "no finding", "no_finding", "negative", "healthy", "0"}


class TaskType(StrEnum):
    """How labels relate to each other.

    binary: two exclusive classes, one sigmoid output for the positive class.
    multiclass: three or more exclusive classes, softmax.
    multilabel: independent findings, one sigmoid each, unknown labels masked.
    """

    BINARY = "binary"
    MULTICLASS = "multiclass"
    MULTILABEL = "multilabel"

    @classmethod
    def parse(cls, value: str | TaskType) -> TaskType:
        if isinstance(value, TaskType):
            return value
        try:
            return cls(str(value).lower())
        except ValueError:
            raise UnknownNameError("task", str(value), [t.value for t in cls]) from None


@dataclass(frozen=True)
class LabelSpace:
    """The classes of a task, in the column order of the label matrix.

    For a binary task the classes are ``[negative, positive]`` and the model has one output,
    the probability of ``classes[1]``.
    """

    task: TaskType
    classes: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        object.__setattr__(self, "task", TaskType.parse(self.task))
        object.__setattr__(self, "classes", tuple(self.classes))
        if len(set(c.lower() for c in self.classes)) != len(self.classes):
            raise ConfigError(f"Class names must be unique (case-insensitively): {list(self.classes)}")
        if self.task is TaskType.BINARY and len(self.classes) != 2:
            raise ConfigError(
                f"A binary task needs exactly 2 classes, got {list(self.classes)}; "
                "use task 'multiclass' for 3 or more exclusive classes."
            )
        if self.task is TaskType.MULTICLASS and len(self.classes) < 2:
            raise ConfigError(f"A multiclass task needs at least 2 classes, got {list(self.classes)}.")

    @property
    def num_outputs(self) -> int:
        """Width of the model's output layer."""
        return 1 if self.task is TaskType.BINARY else len(self.classes)

    @property
    def exclusive(self) -> bool:
        return self.task is not TaskType.MULTILABEL

    @property
    def positive(self) -> str:
        if self.task is not TaskType.BINARY:
            raise ConfigError(f"Only a binary task has a positive class; this one is {self.task.value}.")
        return self.classes[1]

    def index(self, name: str) -> int:
        """Column of ``name``, matched case-insensitively."""
        lowered = [c.lower() for c in self.classes]
        try:
            return lowered.index(name.lower())
        except ValueError:
            raise UnknownNameError("class", name, self.classes) from None

    def to_dict(self) -> dict:
        return {"task": self.task.value, "classes": list(self.classes)}

    @classmethod
    def from_dict(cls, d: dict) -> LabelSpace:
        return cls(task=TaskType.parse(d["task"]), classes=tuple(d["classes"]))

    @classmethod
    def exclusive_from(cls, classes: list[str]) -> LabelSpace:
        """Binary for two classes (negative first), multiclass for more."""
        if len(classes) == 2:
            return cls(TaskType.BINARY, tuple(order_binary(classes)))
        return cls(TaskType.MULTICLASS, tuple(classes))


def order_binary(classes: list[str]) -> list[str]:
    """Put the 'no disease' class first, so that the second is the positive one."""
    a, b = classes
    if b.lower() in NEGATIVE_NAMES and a.lower() not in NEGATIVE_NAMES:
        return [b, a]
    return [a, b]


# -- labels to targets ------------------------------------------------------------------------------
# The one conversion from a label matrix (N x C of 1 / 0 / NaN, columns = label_space.classes) to what a
# model output is compared with; training's loss, the metrics, classical models and the dataset table all
# use it. Written with the operators numpy arrays and torch tensors share (``x != x`` is the NaN test,
# ``x + 0`` a copy), so the loss runs it on the device and core needs neither library.


def class_index(labels: Any) -> Any:
    """The marked class of each row (argmax of the known 1s); -1 where no class is marked."""
    filled = labels + 0
    filled[filled != filled] = 0  # unknown (NaN) is not a mark
    idx = filled.argmax(1)
    idx[filled.sum(1) == 0] = -1
    return idx


def positive_target(labels: Any) -> Any:
    """N x 1 target of a binary task: the positive column, 0 where only the negative class is marked, NaN
    where neither is known."""
    pos = labels[:, 1:2] + 0
    pos[(pos != pos) & (labels[:, 0:1] == 1)] = 0
    return pos


def label_targets(labels: Any, label_space: LabelSpace) -> Any:
    """Per-output targets of an N x C label matrix (numpy or torch).

    Returns:
        binary: N x 1, the positive column (NaN where unknown; see :func:`positive_target`);
        multiclass: N class indices (-1 where no class is marked; see :func:`class_index`);
        multilabel: the N x C matrix unchanged (NaN = unknown).
    """
    if labels.ndim != 2 or labels.shape[1] != len(label_space.classes):
        raise ConfigError(
            f"Expected a label matrix N x {len(label_space.classes)} ({list(label_space.classes)}), "
            f"got shape {tuple(labels.shape)}."
        )
    if label_space.task is TaskType.BINARY:
        return positive_target(labels)
    if label_space.task is TaskType.MULTICLASS:
        return class_index(labels)
    return labels
