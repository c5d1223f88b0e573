"""``cxr evaluate``: a bundle on a labelled dataset at its stored thresholds, with per-group metrics, the
overlap with its training data and (optionally) the result recorded in the bundle."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cxrkit.core.errors import ConfigError, DataFormatError
from cxrkit.core.jsonable import to_jsonable
from cxrkit.core.task import LabelSpace, TaskType
from cxrkit.data import VOCABULARY, load_datasets
from cxrkit.data.align import align_labels
from cxrkit.data.fingerprint import content_hashes, data_fingerprint
from cxrkit.data.table import CxrTable
from cxrkit.evaluation.groups import metrics_by_group
from cxrkit.evaluation.predictions import evaluate_predictions
from cxrkit.evaluation.report import write_report
from cxrkit.evaluation.validation import CURVE_KEYS
from cxrkit.models import load_bundle, resolve_bundle
from cxrkit.models.engine import Engine, InferenceOptions
from cxrkit.models.records import record_evaluation, seen_images

log = logging.getLogger(__name__)


def is_vocabulary_model(space: LabelSpace) -> bool:
    """A multi-label model whose findings are all in the harmonised vocabulary (``all``, ``nih14``)."""
    return space.task is TaskType.MULTILABEL and set(space.classes) <= set(VOCABULARY)


def _group_column(table: CxrTable, column: str) -> list:
    if column not in table.frame.columns:
        known = [
            c for c in ("source", "dataset", "site", "view", "sex", "age_group", "split") if c in table.frame.columns
        ]
        raise ConfigError(f"--by {column}: the data has no such column; it has {known}.")
    values = table.frame[column]
    if values.isna().all():
        log.warning("--by %s: no image of this data records its %s; one '(unknown)' group.", column, column)
    return values.astype("object").where(values.notna(), None).tolist()


_NOT_RECORDED = (*CURVE_KEYS, "bootstrap", "model", "inference", "skipped", "by")


def evaluate_model(
    model: str | Path,
    data: Sequence[str],
    split: str | None = None,
    label_map: Sequence[str] = (),
    out: Path | None = None,
    n_boot: int = 1000,
    batch_size: int = 32,
    inference: InferenceOptions | None = None,
    by: Sequence[str] = (),
    record: str | None = None,
) -> dict[str, Any]:
    """Evaluate a bundle on labelled data at its stored thresholds.

    ``by``: table columns (source, view, sex, age_group, dataset) to report metrics per group of (key ``by``).
    ``record``: store this evaluation in the bundle under that name (config ``evaluations``, shown in its card).
    The result has ``overlap_with_training``: images of the data the bundle was trained or validated on.
    """
    bundle = load_bundle(resolve_bundle(model))
    table = load_datasets(list(data), harmonise=is_vocabulary_model(bundle.label_space))
    if split:
        table = table.split(split)
    elif table.frame["split"].eq("test").any():
        log.info(
            "the data has a test split: evaluating on its %d test images", int(table.frame["split"].eq("test").sum())
        )
        table = table.split("test")
    if not len(table):
        raise DataFormatError(f"No images to evaluate in {list(data)} (split {split!r}).")
    labels = align_labels(table, bundle.classes, label_map, data=data, strict=True)
    space = bundle.label_space
    if space.task is TaskType.BINARY:
        keep = ~np.isnan(labels[:, 1])
        table, labels = table.subset(keep), labels[keep]
    groups = {column: _group_column(table, column) for column in by}  # bad --by fails before inference
    content = content_hashes(table)
    engine = Engine(bundle, inference or InferenceOptions(batch_size=batch_size))
    skipped: list[dict[str, Any]] = []
    probs = engine.run_table(table, "proba", progress=True, skipped=skipped)
    if skipped:
        keep = np.ones(len(table), dtype=bool)
        keep[[s["row"] for s in skipped]] = False
        if not keep.any():
            raise DataFormatError(f"None of the {len(table)} images could be read, e.g. {skipped[0]['error']}")
        table, labels, content = table.subset(keep), labels[keep], content[keep]
        groups = {c: [g for g, k in zip(v, keep, strict=True) if k] for c, v in groups.items()}
    # After inference: near-duplicate hashing decodes every image, and unreadable ones are skipped by now.
    overlap = seen_images(bundle, table, content)
    if overlap.get("count"):
        log.warning(
            "%d of %d images (%.1f%%) were in this model's training or validation data: these scores overstate "
            "how it does on new images. Evaluate on data it has not seen.",
            overlap["count"],
            len(table),
            100 * overlap["fraction"],
        )
    # multiclass: the bundle's mapping ({} arg-max, or its operating class); else one value per output, in order
    thresholds = bundle.thresholds if space.task is TaskType.MULTICLASS else list(bundle.thresholds.values())
    result = evaluate_predictions(space, labels, probs, thresholds=thresholds, n_boot=n_boot)
    result["model"] = {"path": str(bundle.path), "architecture": bundle.architecture, "sha256": bundle.fingerprint}
    result["inference"] = engine.describe()
    result["skipped"] = [{"path": s["path"], "error": s["error"]} for s in skipped]
    result["overlap_with_training"] = overlap
    result["data_fingerprint"] = data_fingerprint(content)
    if groups:
        result["by"] = {
            c: metrics_by_group(space, labels, probs, g, thresholds, n_boot=n_boot) for c, g in groups.items()
        }
    if record:
        entry = {"data": [str(d) for d in data], "split": split, "label_map": list(label_map)}
        entry["metrics"] = {k: v for k, v in result.items() if k not in _NOT_RECORDED}
        entry.update(n=result["n"], by=result.get("by", {}), overlap_with_training=overlap)
        entry["data_fingerprint"] = result["data_fingerprint"]
        record_evaluation(bundle.path, record, to_jsonable(entry))
        result["recorded"] = {"bundle": str(bundle.path), "name": record}
    if out is not None:
        write_report(result, out, labels, probs, space, title=f"{bundle.path.name} on {', '.join(map(str, data))}")
    return result
