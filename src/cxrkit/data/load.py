"""Find the adapter for a path, load one or several datasets, and combine them into one table."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cxrkit.core.errors import DataFormatError, UnknownNameError
from cxrkit.core.task import LabelSpace, TaskType
from cxrkit.data.adapters.covid import CovidAdapter
from cxrkit.data.adapters.csv_generic import CsvAdapter
from cxrkit.data.adapters.folder import FolderAdapter
from cxrkit.data.adapters.medmnist import MedMnistAdapter
from cxrkit.data.adapters.nih import NihAdapter
from cxrkit.data.adapters.radiography_db import RadiographyDbAdapter
from cxrkit.data.align import align_labels
from cxrkit.data.harmonise import harmonise as harmonise_table
from cxrkit.data.table import CxrTable

log = logging.getLogger(__name__)

# Order matters: the specific layouts are tried before the generic ones.
ADAPTERS = (CovidAdapter(), NihAdapter(), MedMnistAdapter(), CsvAdapter(), RadiographyDbAdapter(), FolderAdapter())
FORMATS = {a.name: a for a in ADAPTERS}
CLASS_SELECT_SEP = "::"


def supported_layouts() -> str:
    return "\n".join(f"  --format {a.name:9s} {a.looks_like}" for a in ADAPTERS)


def detect_format(path: Path) -> str:
    for adapter in ADAPTERS:
        if adapter.detect(path):
            return adapter.name
    raise DataFormatError(
        f"{path}: no supported dataset layout found there. Supported layouts:\n{supported_layouts()}\n"
        "Point at the dataset's root folder or its CSV/NPZ file, or pass --format."
    )


def parse_source(spec: str) -> tuple[Path, list[str] | None]:
    """'PATH' or 'PATH::CLASS_A,CLASS_B' (keep only those classes of that source)."""
    head, sep, tail = spec.rpartition(CLASS_SELECT_SEP)
    if sep and tail and not tail.endswith("]"):
        return Path(head).expanduser(), [c.strip() for c in tail.split(",") if c.strip()]
    return Path(spec).expanduser(), None


def load_dataset(spec: str | Path, format: str | None = None, **options) -> CxrTable:
    """Load one dataset given as 'PATH' or 'PATH::CLASS,CLASS'.

    Args:
        spec: a dataset root folder, CSV, NPZ or cxrkit manifest; '::' selects classes.
        format: adapter name (folder, nih, covid, medmnist, csv); auto-detected when None.
        **options: passed to the adapter (e.g. ``views`` for covid, ``task`` for csv).
    """
    from cxrkit.data.cache import load_cache
    from cxrkit.data.shards import REMOTE, is_cache

    if str(spec).startswith(REMOTE):  # a cache in object storage, 'URI' or 'URI::CLASS,CLASS'
        uri, _, tail = str(spec).partition("::")
        table = load_cache(uri)
        classes = [c.strip() for c in tail.split(",") if c.strip()]
        return table.select_classes(classes) if classes else table
    path, classes = parse_source(str(spec))
    if not path.exists():
        raise DataFormatError(f"{path}: no such file or folder.")
    if is_cache(path):  # cxr data cache output: shards + table
        table = load_cache(path)
        return table.select_classes(classes) if classes else table
    name = format or detect_format(path)
    if name not in FORMATS:
        raise UnknownNameError("dataset format", name, FORMATS)
    adapter = FORMATS[name]
    if format and not adapter.detect(path):
        raise DataFormatError(f"{path}: does not look like --format {name}: expected {adapter.looks_like}.")
    table = adapter.load(path, **options)
    table = fill_from_dicom(table)
    if classes:
        table = table.select_classes(classes)
    return table


def load_datasets(
    specs: Sequence[str | Path], format: str | None = None, harmonise: bool = False, **options
) -> CxrTable:
    """Load and combine several datasets (see ``combine``).

    ``harmonise=True`` relabels each one to the shared multi-label vocabulary first (see
    :mod:`cxrkit.data.harmonise`): NaN where a source does not label a finding.
    """
    if not specs:
        raise DataFormatError("No dataset given.")
    if harmonise:
        return load_harmonised([str(s) for s in specs], format=format, **options)
    tables = [load_dataset(s, format=format, **options) for s in specs]
    return tables[0] if len(tables) == 1 else combine(tables)


def load_harmonised(specs: Sequence[str], format: str | None = None, **options) -> CxrTable:
    """Load each dataset, harmonise it, and stack them (one vocabulary, so a plain concatenation)."""
    covid_is_pneumonia = options.pop("covid_is_pneumonia", True)
    tables = [harmonise_table(load_dataset(s, format=format, **options), covid_is_pneumonia) for s in specs]
    return tables[0] if len(tables) == 1 else combine(tables)


def combine(tables: Sequence[CxrTable]) -> CxrTable:
    """One table from several, classes matched case-insensitively, each row keeping its ``source``.

    Exclusive tables stay exclusive (a row labelled 'PNEUMONIA' is 0 for every other class); if any
    table is multi-label, classes a source does not annotate are NaN (unknown) for its rows.
    """
    classes: list[str] = []
    for t in tables:
        for c in t.classes:
            if c.lower() not in [k.lower() for k in classes]:
                classes.append(c)
    exclusive = all(t.label_space.exclusive for t in tables)
    space = (
        LabelSpace.exclusive_from(classes)
        if exclusive and len(classes) >= 2
        else LabelSpace(TaskType.MULTILABEL, tuple(classes))
    )
    # A table without classes (unlabelled images) is unknown for every class.
    blocks = [
        align_labels(t, space.classes, fill_absent=exclusive)
        if t.classes
        else np.full((len(t), len(space.classes)), np.nan, np.float32)
        for t in tables
    ]
    frame = pd.concat([t.frame for t in tables], ignore_index=True)
    notes = [n for t in tables for n in t.notes]
    return CxrTable(frame, np.concatenate(blocks), space, notes)


def fill_from_dicom(table: CxrTable) -> CxrTable:
    """Read patient ID, study date and view from DICOM headers where the table has none."""
    paths = table.frame["path"].astype(str)
    is_dcm = paths.str.lower().str.endswith((".dcm", ".dicom"))
    if not is_dcm.any():
        return table
    from cxrkit.io import read_dicom_meta

    frame = table.frame.copy()
    for col in ("patient_id", "study_date", "view"):
        frame[col] = frame[col].astype("object")
    for i in np.flatnonzero(is_dcm.to_numpy()):
        meta = read_dicom_meta(paths.iat[i])
        for col, value in (("patient_id", meta.patient_id), ("study_date", meta.study_date), ("view", meta.view)):
            if pd.isna(frame.at[i, col]) and value:
                frame.at[i, col] = value
    return CxrTable(frame, table.labels, table.label_space, table.notes)
