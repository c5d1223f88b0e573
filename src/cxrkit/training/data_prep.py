"""From a recipe's data section to a split CxrTable."""

from __future__ import annotations

import logging

import numpy as np

from cxrkit.core.errors import ConfigError
from cxrkit.core.task import LabelSpace, TaskType
from cxrkit.data import assign_splits, check_no_leakage, load_datasets, undersample
from cxrkit.data.fingerprint import apply_recorded_split
from cxrkit.data.harmonise import drop_unlabelled_findings
from cxrkit.data.splits import SourceFold, source_folds
from cxrkit.data.table import CxrTable
from cxrkit.models.intended import IntendedInput
from cxrkit.training.recipe import DataSpec

log = logging.getLogger(__name__)


def prepare_table(spec: DataSpec) -> CxrTable:
    """Load, optionally balance, and split the recipe's data; check for leakage.

    The split is patient-grouped (``data.val``/``data.test``), or the source's own (``keep_existing_splits``),
    or by source: ``data.val_source`` validates on that one source and trains on the others. For
    ``data.validation: loso`` the table is returned unsplit; ``cxrkit.training.loso`` makes one split per fold.
    """
    options = {}
    if spec.views is not None:
        options["views"] = tuple(spec.views)
    if spec.task is not None:
        options["task"] = spec.task
    if spec.harmonise:
        options["covid_is_pneumonia"] = spec.covid_is_pneumonia
    table = load_datasets(spec.sources, format=spec.format, harmonise=spec.harmonise, **options)
    if not len(table.classes):
        raise ConfigError(f"The data {spec.sources} has no labels; training needs a labelled dataset.")
    table = drop_unlabelled_findings(table) if spec.harmonise else drop_empty_classes(table)
    if spec.per_class:
        table = undersample(table, spec.per_class, seed=spec.seed)
    if spec.validation == "loso":
        return table
    if spec.val_source:
        return split_by_source(table, spec.val_source, spec.source_column)
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


def fold_table(table: CxrTable, fold: SourceFold) -> CxrTable:
    """The rows of one leave-source-out fold: its training sources as 'train', the held-out one as 'val'."""
    split = np.full(len(table), None, dtype=object)
    split[fold.train_index] = "train"
    split[fold.val_index] = "val"
    keep = split != None  # noqa: E711 (elementwise on an object array)
    out = table.subset(keep)
    out.frame["split"] = split[keep]
    return out


def split_by_source(table: CxrTable, source: str, column: str = "source") -> CxrTable:
    """Validate on ``source`` (every row of it), train on all other sources: no source on both sides.

    Raises:
        ConfigError: ``source`` is not a value of ``column`` (the message lists the sources).
    """
    folds = {f.held_out: f for f in source_folds(table, column)}
    if source not in folds:
        raise ConfigError(
            f"data.val_source {source!r} is not a source of this data; its {column} values: {sorted(folds)}."
        )
    return fold_table(table, folds[source])


def drop_empty_classes(table: CxrTable) -> CxrTable:
    """Drop exclusive classes with no image (e.g. ``train::NORMAL`` + ``covid::COVID-19`` keeps the combined
    3-class columns): a model must not learn an output that never occurs; two classes left make it binary.
    """
    space = table.label_space
    if space.task is TaskType.MULTILABEL:
        return table
    counts = np.nansum(table.labels, axis=0)
    present = [c for i, c in enumerate(space.classes) if counts[i] > 0]
    if len(present) == len(space.classes) or len(present) < 2:
        return table
    new = LabelSpace.exclusive_from(present)
    labels = table.labels[:, [space.classes.index(c) for c in new.classes]]
    log.info(
        "classes without images dropped: %s; task is now %s %s",
        [c for c in space.classes if c not in present],
        new.task.value,
        list(new.classes),
    )
    return table.with_label_space(new, labels)


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
        "split": _split_description(spec),
        "source_counts": table.frame["source"].value_counts().to_dict(),
        "image_licenses": {str(k): int(v) for k, v in licenses.items()},
        "notes": list(table.notes),
    }


def intended_input(table: CxrTable, spec: DataSpec, sample: int = 200) -> IntendedInput | None:
    """The input a model trained on ``table`` is made for, from the sizes of up to ``sample`` images (headers).

    Below half the smallest training side a warning is due (detail the model never saw at that scale is
    missing). A model of thumbnails (every side <= 128 px, e.g. MedMNIST) also warns above 4x its largest
    training side: a full radiograph squeezed to a thumbnail is not what it learnt from.
    """
    from cxrkit.data.summary import image_size_stats

    stats = image_size_stats(table, max_images=sample)
    if not stats.get("n_read"):
        return None
    w, h = stats["width"], stats["height"]
    smallest, largest = min(w["min"], h["min"]), max(w["max"], h["max"])
    sources = ", ".join(str(s).rstrip("/").split("/")[-1] for s in spec.sources)
    return IntendedInput(
        description=f"images like its training data ({sources}; median {w['median']:.0f}x{h['median']:.0f} px)",
        min_side=max(8, smallest // 2),
        max_side=4 * largest if largest <= 128 else None,
    )


def validation_split(spec: DataSpec, record: dict[str, np.ndarray] | None = None) -> CxrTable:
    """The validation rows a bundle was validated on: its recorded split where it has one (exact, by image
    content hash), else the recipe's split redone (bundles saved before splits were recorded)."""
    table = prepare_table(spec)
    if record is not None:
        table = apply_recorded_split(table, record)
    return table.split("val")


def _split_description(spec: DataSpec) -> dict:
    if spec.validation == "loso":
        return {"validation": "leave-one-source-out", "column": spec.source_column}
    if spec.val_source:
        return {"validation": "held-out source", "val_source": spec.val_source, "column": spec.source_column}
    return {"val": spec.val, "test": spec.test, "seed": spec.seed, "grouped_by": "patient"}
