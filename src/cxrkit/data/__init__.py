"""Datasets as one table (path, patient, date, view, split, source + N x C labels), from published layouts."""

from cxrkit.data.load import combine, detect_format, load_dataset, load_datasets, supported_layouts
from cxrkit.data.manifest import write_manifest
from cxrkit.data.splits import (
    assign_splits,
    check_no_leakage,
    class_weights,
    leaking_patients,
    patient_kfold,
    undersample,
)
from cxrkit.data.summary import summarize
from cxrkit.data.table import COLUMNS, SPLITS, CxrTable

__all__ = [
    "COLUMNS",
    "SPLITS",
    "CxrTable",
    "assign_splits",
    "check_no_leakage",
    "class_weights",
    "combine",
    "detect_format",
    "leaking_patients",
    "load_dataset",
    "load_datasets",
    "patient_kfold",
    "summarize",
    "supported_layouts",
    "undersample",
    "write_manifest",
]
