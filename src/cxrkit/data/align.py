"""A table's labels as columns of a model's classes (for evaluating or auditing a model on any dataset)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cxrkit.core.errors import ConfigError, DataFormatError
from cxrkit.data.table import CxrTable


def align_labels(table: CxrTable, model_classes: Sequence[str], label_map: Sequence[str] = ()) -> np.ndarray:
    """The table's labels as columns of the model's classes (matched case-insensitively, or by ``label_map``).

    ``label_map`` entries are 'DATASET_CLASS=MODEL_CLASS'. A model class the data does not annotate is NaN.
    """
    mapping: dict[str, str] = {}
    for item in label_map:
        src, sep, dst = item.partition("=")
        if not sep:
            raise ConfigError(f"--label-map takes DATASET_CLASS=MODEL_CLASS, got {item!r}.")
        mapping[src.strip().lower()] = dst.strip().lower()
    wanted = [c.lower() for c in model_classes]
    out = np.full((len(table), len(model_classes)), np.nan, np.float32)
    matched = 0
    for j, c in enumerate(table.classes):
        target = mapping.get(c.lower(), c.lower())
        if target in wanted:
            col = wanted.index(target)
            out[:, col] = (
                table.labels[:, j] if np.isnan(out[:, col]).all() else np.fmax(out[:, col], table.labels[:, j])
            )
            matched += 1
    if not matched:
        raise DataFormatError(
            f"None of the dataset's classes {list(table.classes)} match the model's {list(model_classes)}. "
            "Map them with --label-map DATASET_CLASS=MODEL_CLASS."
        )
    if table.label_space.exclusive:
        known = np.nansum(table.labels, axis=1) > 0
        out[known] = np.nan_to_num(out[known], nan=0.0)  # exclusive data: other classes are known absent
    return out
