"""What every adapter provides, and shared helpers for building tables."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from cxrkit.core.task import LabelSpace
from cxrkit.data.table import CxrTable

log = logging.getLogger(__name__)


class Adapter(Protocol):
    """A published dataset layout."""

    name: str  # the --format value
    looks_like: str  # one line shown when no adapter matches a path

    def detect(self, path: Path) -> bool: ...

    def load(self, path: Path, **options) -> CxrTable: ...


@dataclass
class Rows:
    """Accumulates rows and their labels before becoming a CxrTable."""

    records: list[dict]
    labels: list[np.ndarray]

    @classmethod
    def empty(cls) -> Rows:
        return cls([], [])

    def add(self, label_row: Sequence[float], **fields) -> None:
        self.records.append(fields)
        self.labels.append(np.asarray(label_row, dtype=np.float32))

    def to_table(self, space: LabelSpace, notes: list[str] | None = None) -> CxrTable:
        frame = pd.DataFrame.from_records(self.records)
        labels = np.stack(self.labels) if self.labels else np.zeros((0, len(space.classes)), np.float32)
        return CxrTable(frame, labels, space, notes or [])


def one_hot(index: int, n: int) -> np.ndarray:
    row = np.zeros(n, dtype=np.float32)
    row[index] = 1.0
    return row


def warn_no_patients(source: str) -> str:
    msg = f"{source}: the source has no patient IDs; splits will be by image, so near-duplicate images of one patient may leak."
    log.warning(msg)
    return msg
