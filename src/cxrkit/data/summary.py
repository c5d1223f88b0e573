"""What a dataset holds: images, patients, class x split counts, views, sources, image sizes."""

from __future__ import annotations

import logging
from collections import Counter

import numpy as np
import pandas as pd

from cxrkit.core.errors import ImageDecodeError
from cxrkit.data.images import load_size
from cxrkit.data.splits import leaking_patients, split_counts
from cxrkit.data.table import CxrTable

log = logging.getLogger(__name__)


def _counts(series: pd.Series) -> dict[str, int]:
    named = series.astype("object").where(series.notna(), "(unknown)").astype(str)
    return {k: int(v) for k, v in named.value_counts().items()}


def image_size_stats(table: CxrTable, max_images: int | None = None) -> dict:
    """Width/height distribution, read from headers (all images, or an even sample of ``max_images``)."""
    paths = table.frame["path"].astype(str).to_list()
    if max_images and len(paths) > max_images:
        paths = [paths[i] for i in np.linspace(0, len(paths) - 1, max_images).astype(int)]
    sizes, unreadable = [], []
    for p in paths:
        try:
            sizes.append(load_size(p))
        except (ImageDecodeError, OSError) as e:
            unreadable.append(str(e))
    if not sizes:
        return {"n_read": 0, "unreadable": len(unreadable)}
    w = np.array([s[0] for s in sizes])
    h = np.array([s[1] for s in sizes])
    common = Counter(f"{a}x{b}" for a, b in sizes).most_common(5)
    return {
        "n_read": len(sizes),
        "unreadable": len(unreadable),
        "width": {"min": int(w.min()), "median": float(np.median(w)), "max": int(w.max())},
        "height": {"min": int(h.min()), "median": float(np.median(h)), "max": int(h.max())},
        "most_common": {k: v for k, v in common},
    }


def summarize(table: CxrTable, size_sample: int | None = 2000) -> dict:
    """A JSON-ready summary of ``table``.

    Keys: n_images, n_patients (None where the source has no patient IDs), n_images_without_patient,
    task, classes, class_counts (class -> images with that label), unknown_label_counts, split_counts
    (split -> class -> images), views, sources, age_groups, sexes (empty where the source has none), image_sizes, leaking_patients, notes.
    """
    frame = table.frame
    has_pid = frame["patient_id"].notna()
    patients = (frame.loc[has_pid, "source"].astype(str) + "/" + frame.loc[has_pid, "patient_id"].astype(str)).nunique()
    images_per_patient = (
        frame[has_pid].groupby(["source", "patient_id"]).size().describe().round(2).to_dict() if has_pid.any() else {}
    )
    return {
        "n_images": len(table),
        "n_patients": int(patients) if has_pid.any() else None,
        "n_images_without_patient": int((~has_pid).sum()),
        "images_per_patient": {k: float(v) for k, v in images_per_patient.items()},
        "task": table.task.value,
        "classes": list(table.classes),
        "class_counts": table.class_counts(),
        "unknown_label_counts": {c: int(np.isnan(table.labels[:, i]).sum()) for i, c in enumerate(table.classes)},
        "split_counts": split_counts(table),
        "views": _counts(frame["view"]),
        "sources": _counts(frame["source"]),
        "age_groups": _counts(frame["age_group"]) if "age_group" in frame else {},
        "sexes": _counts(frame["sex"]) if "sex" in frame else {},
        "image_sizes": image_size_stats(table, size_sample),
        "leaking_patients": len(leaking_patients(table)),
        "notes": list(table.notes),
    }
