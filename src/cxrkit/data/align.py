"""A table's labels as columns of a model's classes (for evaluating or auditing a model on any dataset)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cxrkit.core.errors import ConfigError, DataFormatError
from cxrkit.data.table import CxrTable


def align_labels(
    table: CxrTable,
    model_classes: Sequence[str],
    label_map: Sequence[str] = (),
    data: Sequence[str] = (),
    strict: bool = False,
    fill_absent: bool = True,
) -> np.ndarray:
    """The table's labels as columns of the model's classes (matched case-insensitively, or by ``label_map``).

    ``label_map`` entries are 'DATASET_CLASS=MODEL_CLASS'. A model class the data does not annotate is NaN.
    ``strict`` (``cxr evaluate``; checked before any inference): a labelled class of exclusive data that fits
    no model class is an error naming it and the two fixes (``PATH::A,B`` keeps classes, ``--label-map``
    renames them); ``data`` (the dataset specs) makes the first fix concrete.
    ``fill_absent``: a labelled row of exclusive data is 0 (absent) for every other model class; off when
    combining into a multi-label table, where a class the source does not annotate stays unknown.
    """
    mapping: dict[str, str] = {}
    wanted = [c.lower() for c in model_classes]
    for item in label_map:
        src, sep, dst = item.partition("=")
        if not sep or not src.strip() or not dst.strip():
            raise ConfigError(f"--label-map takes DATASET_CLASS=MODEL_CLASS (e.g. COVID=COVID-19), got {item!r}.")
        if strict and dst.strip().lower() not in wanted:
            raise ConfigError(
                f"--label-map {item}: {dst.strip()!r} is not a model class; it has {list(model_classes)}."
            )
        mapping[src.strip().lower()] = dst.strip().lower()
    out = np.full((len(table), len(model_classes)), np.nan, np.float32)
    unmatched = []
    for j, c in enumerate(table.classes):
        target = mapping.get(c.lower(), c.lower())
        if target not in wanted:
            unmatched.append(c)
            continue
        col = wanted.index(target)
        out[:, col] = table.labels[:, j] if np.isnan(out[:, col]).all() else np.fmax(out[:, col], table.labels[:, j])
    if len(unmatched) == len(table.classes):
        raise DataFormatError(
            f"None of the dataset's classes {list(table.classes)} match the model's {list(model_classes)}. "
            "Map them with --label-map DATASET_CLASS=MODEL_CLASS."
        )
    counts = table.class_counts()
    missing = [c for c in unmatched if counts.get(c, 0)]
    if strict and table.label_space.exclusive and missing:
        fix_paths = ", ".join(f"'{str(d).split('::')[0]}::{','.join(model_classes)}'" for d in data) or "PATH::A,B"
        shown = ", ".join(f"{c!r} ({counts[c]:,} images)" for c in missing)
        raise DataFormatError(
            f"The data has class {shown} that the model does not have: its classes are {list(model_classes)}. "
            f"Fix: keep only the classes it knows ({fix_paths}), or map each class to one of the model's with "
            f"--label-map (e.g. --label-map {missing[0]}={model_classes[-1]})."
        )
    if fill_absent and table.label_space.exclusive:
        known = np.nansum(table.labels, axis=1) > 0
        out[known] = np.nan_to_num(out[known], nan=0.0)  # exclusive data: other classes are known absent
    return out
