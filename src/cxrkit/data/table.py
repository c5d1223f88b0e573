"""The dataset table: one row per image, row-aligned with an N x C label matrix of 1 / 0 / NaN."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cxrkit.core.errors import DataFormatError
from cxrkit.core.task import LabelSpace, TaskType, class_index

# Columns every table has, in this order. Unknown values are NA (never invented).
COLUMNS = ("path", "patient_id", "study_date", "offset", "view", "split", "source")
SPLITS = ("train", "val", "test")


@dataclass
class CxrTable:
    """A dataset in cxrkit's one shape.

    Attributes:
        frame: one row per image with the columns in ``COLUMNS`` (plus any extras an adapter keeps,
            such as ``license``). ``path`` is absolute. ``patient_id`` is NA where the source has none.
            ``offset`` is a day offset within the patient (float), ``study_date`` a date string.
        labels: float32 array N x C of 1 (present), 0 (absent), NaN (unknown: masked out of the loss).
        label_space: the task and its class names, in column order.
    """

    frame: pd.DataFrame
    labels: np.ndarray
    label_space: LabelSpace
    notes: list[str] = field(default_factory=list)  # what an adapter left out, and why

    def __post_init__(self) -> None:
        self.frame = self.frame.reset_index(drop=True)
        for col in COLUMNS:
            if col not in self.frame.columns:
                self.frame[col] = pd.NA
        extras = [c for c in self.frame.columns if c not in COLUMNS]
        self.frame = self.frame[list(COLUMNS) + extras]
        labels = np.asarray(self.labels, dtype=np.float32)
        # reshape(0, -1) is ambiguous for an empty table: keep an already 2-D matrix as it is
        self.labels = labels if labels.ndim == 2 else labels.reshape(len(self.frame), -1)
        if self.labels.shape[1] != len(self.label_space.classes):
            raise DataFormatError(
                f"Label matrix has {self.labels.shape[1]} columns but the label space names "
                f"{len(self.label_space.classes)} classes: {list(self.label_space.classes)}."
            )
        finite = self.labels[np.isfinite(self.labels)]
        if finite.size and not np.isin(finite, (0.0, 1.0)).all():
            raise DataFormatError("Labels must be 1, 0 or NaN (unknown).")

    # -- basic views -----------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.frame)

    @property
    def classes(self) -> tuple[str, ...]:
        return self.label_space.classes

    @property
    def task(self) -> TaskType:
        return self.label_space.task

    @property
    def has_patients(self) -> bool:
        return bool(self.frame["patient_id"].notna().any())

    def group_ids(self) -> np.ndarray:
        """Patient ID per row, or the image path where the patient is unknown (split by image)."""
        pid = self.frame["patient_id"].astype("object")
        return np.where(pid.isna(), "image:" + self.frame["path"].astype(str), "patient:" + pid.astype(str))

    def class_index(self) -> np.ndarray:
        """For exclusive tasks: the class column of each row (-1 where unlabelled)."""
        if not self.labels.shape[1]:
            return np.full(len(self), -1, dtype=np.int64)
        return class_index(self.labels)

    def subset(self, mask: np.ndarray | Sequence[int]) -> CxrTable:
        """Rows selected by a boolean mask or integer positions."""
        mask = np.asarray(mask)
        idx = np.flatnonzero(mask) if mask.dtype == bool else mask
        return CxrTable(self.frame.iloc[idx].copy(), self.labels[idx], self.label_space, list(self.notes))

    def split(self, name: str) -> CxrTable:
        """The rows of one split ('train', 'val' or 'test')."""
        return self.subset((self.frame["split"] == name).fillna(False).to_numpy(dtype=bool))

    def with_label_space(self, label_space: LabelSpace, labels: np.ndarray) -> CxrTable:
        return CxrTable(self.frame.copy(), labels, label_space, list(self.notes))

    # -- class counts ------------------------------------------------------------------
    def class_counts(self) -> dict[str, int]:
        """Images with each label present."""
        return {c: int(np.nansum(self.labels[:, i] == 1)) for i, c in enumerate(self.classes)}

    def select_classes(self, classes: Sequence[str]) -> CxrTable:
        """Keep only rows labelled with one of ``classes`` (exclusive tasks) and only those columns.

        A single class of an exclusive task keeps its rows and all columns. For multi-label tables the
        rows are kept and the other columns dropped.
        """
        cols = [self.label_space.index(c) for c in classes]
        names = [self.classes[i] for i in cols]
        if self.label_space.exclusive and len(cols) == 1:
            # One class of an exclusive task (e.g. the COVID-19 rows of the collection): keep every
            # column, so that combining with another source stays a single-label task.
            return self.subset(self.labels[:, cols[0]] == 1)
        if self.label_space.exclusive:
            keep = np.nansum(self.labels[:, cols], axis=1) > 0
            sub = self.subset(keep)
            space = LabelSpace.exclusive_from(names)
            order = [names.index(c) for c in space.classes]
            return sub.with_label_space(space, sub.labels[:, [cols[i] for i in order]])
        return self.with_label_space(LabelSpace(TaskType.MULTILABEL, tuple(names)), self.labels[:, cols])
