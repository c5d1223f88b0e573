"""From a recipe's data section to a split CxrTable."""

from __future__ import annotations

import logging

from cxrkit.core.errors import ConfigError
from cxrkit.data import assign_splits, check_no_leakage, load_datasets, undersample
from cxrkit.data.table import CxrTable
from cxrkit.training.recipe import DataSpec

log = logging.getLogger(__name__)


def prepare_table(spec: DataSpec) -> CxrTable:
    """Load, optionally balance, and split (patient-grouped) the recipe's data; check for leakage."""
    options = {}
    if spec.views is not None:
        options["views"] = tuple(spec.views)
    if spec.task is not None:
        options["task"] = spec.task
    table = load_datasets(spec.sources, format=spec.format, **options)
    if not len(table.classes):
        raise ConfigError(f"The data {spec.sources} has no labels; training needs a labelled dataset.")
    if spec.per_class:
        table = undersample(table, spec.per_class, seed=spec.seed)
    has_splits = table.frame["split"].isin(["train", "val"]).all() and (table.frame["split"] == "val").any()
    if spec.keep_existing_splits and has_splits:
        check_no_leakage(table)
    else:
        if spec.keep_existing_splits:
            log.warning("data.keep_existing_splits is set but the source has no train/val split; splitting by patient.")
        table = assign_splits(table, val=spec.val, test=spec.test, seed=spec.seed)
    if not (table.frame["split"] == "val").any():
        raise ConfigError("The validation split is empty; set data.val above 0 (thresholds are chosen on it).")
    return table


def data_summary(table: CxrTable, spec: DataSpec) -> dict:
    """What a bundle records about its training data (no image reads)."""
    from cxrkit.data.splits import split_counts

    licenses = table.frame["license"].fillna("(unstated)").value_counts().to_dict() if "license" in table.frame else {}
    return {
        "sources": spec.sources,
        "n_images": len(table),
        "n_patients": int(table.frame["patient_id"].nunique()) if table.has_patients else None,
        "class_counts": table.class_counts(),
        "split_counts": split_counts(table),
        "split": {"val": spec.val, "test": spec.test, "seed": spec.seed, "grouped_by": "patient"},
        "source_counts": table.frame["source"].value_counts().to_dict(),
        "image_licenses": {str(k): int(v) for k, v in licenses.items()},
        "notes": list(table.notes),
    }
