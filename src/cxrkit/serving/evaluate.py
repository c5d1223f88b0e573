"""Evaluate a bundle on a labelled dataset at its stored thresholds."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cxrkit.core.errors import DataFormatError
from cxrkit.core.task import TaskType
from cxrkit.data import load_datasets
from cxrkit.data.align import align_labels
from cxrkit.evaluation import evaluate_predictions, write_report
from cxrkit.models import load_bundle, resolve_bundle
from cxrkit.models.engine import Engine, InferenceOptions

log = logging.getLogger(__name__)


def evaluate_model(
    model: str | Path,
    data: Sequence[str],
    split: str | None = None,
    label_map: Sequence[str] = (),
    out: Path | None = None,
    n_boot: int = 1000,
    batch_size: int = 32,
    inference: InferenceOptions | None = None,
) -> dict[str, Any]:
    bundle = load_bundle(resolve_bundle(model))
    table = load_datasets(list(data))
    if split:
        table = table.split(split)
    elif table.frame["split"].eq("test").any():
        log.info(
            "the data has a test split: evaluating on its %d test images", int(table.frame["split"].eq("test").sum())
        )
        table = table.split("test")
    if not len(table):
        raise DataFormatError(f"No images to evaluate in {list(data)} (split {split!r}).")
    labels = align_labels(table, bundle.classes, label_map)
    space = bundle.label_space
    if space.task is TaskType.BINARY:
        keep = ~np.isnan(labels[:, 1])
        table, labels = table.subset(keep), labels[keep]
    engine = Engine(bundle, inference or InferenceOptions(batch_size=batch_size))
    skipped: list[dict[str, Any]] = []
    probs = engine.run_table(table, "proba", progress=True, skipped=skipped)
    if skipped:
        keep = np.ones(len(table), dtype=bool)
        keep[[s["row"] for s in skipped]] = False
        if not keep.any():
            raise DataFormatError(f"None of the {len(table)} images could be read, e.g. {skipped[0]['error']}")
        table, labels = table.subset(keep), labels[keep]
    thresholds = None if space.task is TaskType.MULTICLASS else [bundle.thresholds[k] for k in bundle.thresholds]
    result = evaluate_predictions(space, labels, probs, thresholds=thresholds, n_boot=n_boot)
    result["model"] = {"path": str(bundle.path), "architecture": bundle.architecture, "sha256": bundle.fingerprint}
    result["inference"] = engine.describe()
    result["skipped"] = [{"path": s["path"], "error": s["error"]} for s in skipped]
    if out is not None:
        write_report(result, out, labels, probs, space, title=f"{bundle.path.name} on {', '.join(map(str, data))}")
    return result
