"""Datasets as one table (path, patient, date, view, split, source + N x C labels), from published layouts."""

from cxrkit.data.harmonise import VOCABULARY, harmonise
from cxrkit.data.load import combine, detect_format, load_dataset, load_datasets, load_harmonised, supported_layouts
from cxrkit.data.manifest import write_manifest
from cxrkit.data.splits import (
    SourceFold,
    assign_splits,
    check_no_leakage,
    class_weights,
    leaking_patients,
    patient_kfold,
    source_folds,
    undersample,
)
from cxrkit.data.summary import summarize
from cxrkit.data.table import COLUMNS, SPLITS, CxrTable

__all__ = [
    "COLUMNS",
    "VOCABULARY",
    "SourceFold",
    "SPLITS",
    "CxrTable",
    "assign_splits",
    "check_no_leakage",
    "class_weights",
    "combine",
    "detect_format",
    "harmonise",
    "leaking_patients",
    "load_harmonised",
    "load_dataset",
    "load_datasets",
    "patient_kfold",
    "source_folds",
    "summarize",
    "supported_layouts",
    "undersample",
    "write_manifest",
]
