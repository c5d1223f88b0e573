"""Generic CSV: a path column plus label columns (0/1/blank), or one pipe-separated labels column.

cxrkit's own manifests (written by `cxr data split`) are CSVs of this kind whose label columns are
named ``label:<class>``; they load back into exactly the table that was written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cxrkit.core.errors import DataFormatError
from cxrkit.core.task import LabelSpace, TaskType
from cxrkit.data.adapters.base import warn_no_patients
from cxrkit.data.images import NPZ_REF
from cxrkit.data.table import COLUMNS, CxrTable

PATH_COLUMNS = ("path", "filename", "file", "image", "image_path", "Image Index")
PATIENT_COLUMNS = ("patient_id", "patientid", "Patient ID", "patient")
TEXT_LABEL_COLUMNS = ("labels", "label", "finding", "findings", "Finding Labels", "class")
# Extra columns adapters keep (demographics, provenance); a manifest carries them back.
EXTRA_COLUMNS = ("follow_up", "license", "finding", "age", "age_group", "sex", "dataset", "pre_covid", "mask_path")
META_COLUMNS = {"study_date", "date", "offset", "view", "View Position", "split", "source", *EXTRA_COLUMNS}
LABEL_PREFIX = "label:"


def _first(columns: list[str], candidates: tuple[str, ...]) -> str | None:
    lowered = {c.lower(): c for c in columns}
    for cand in candidates:
        if cand.lower() in lowered:
            return lowered[cand.lower()]
    return None


class CsvAdapter:
    name = "csv"
    looks_like = "a CSV with a path column (path/filename/image) and 0/1 label columns or one 'labels' column (a|b)"
    # your own data: nothing to download

    def detect(self, path: Path) -> bool:
        if not (path.is_file() and path.suffix.lower() == ".csv"):
            return False
        try:
            cols = list(pd.read_csv(path, nrows=0).columns)
        except Exception:
            return False
        return _first(cols, PATH_COLUMNS) is not None

    def load(self, path: Path, task: str | None = None, **options) -> CxrTable:
        df = pd.read_csv(path, keep_default_na=True)
        cols = list(df.columns)
        path_col = _first(cols, PATH_COLUMNS)
        if path_col is None:
            raise DataFormatError(f"{path}: no path column; name one of {list(PATH_COLUMNS)}.")
        manifest_cols = [c for c in cols if c.startswith(LABEL_PREFIX)]
        text_col = _first(cols, TEXT_LABEL_COLUMNS) if not manifest_cols else None
        if manifest_cols:
            classes = [c[len(LABEL_PREFIX) :] for c in manifest_cols]
            labels = df[manifest_cols].apply(pd.to_numeric, errors="coerce").to_numpy(np.float32)
        elif text_col is not None:
            classes, labels = _from_text(df[text_col])
        else:
            pid_col = _first(cols, PATIENT_COLUMNS)
            used = {path_col, pid_col} | META_COLUMNS
            label_cols = [c for c in cols if c not in used and _is_binary_column(df[c])]
            classes = label_cols
            labels = df[label_cols].apply(pd.to_numeric, errors="coerce").to_numpy(np.float32)
        space = _infer_space(classes, labels, task, text_col is not None and not _has_pipes(df[text_col]))
        frame = _frame(df, path, path_col)
        if space.task is TaskType.BINARY and list(space.classes) != classes:
            labels = labels[:, [classes.index(c) for c in space.classes]]
        table = CxrTable(frame, labels, space, [])
        if not table.has_patients:
            table.notes.append(warn_no_patients(path.name))
        return table


def _is_binary_column(s: pd.Series) -> bool:
    vals = pd.to_numeric(s, errors="coerce")
    non_na = vals.dropna()
    return len(non_na) > 0 and s.notna().sum() == len(non_na) and non_na.isin([0, 1]).all()


def _has_pipes(s: pd.Series) -> bool:
    return bool(s.astype(str).str.contains("|", regex=False).any())


def _from_text(s: pd.Series) -> tuple[list[str], np.ndarray]:
    items = [[t.strip() for t in str(v).split("|") if t.strip()] if pd.notna(v) else None for v in s]
    classes = sorted({t for row in items if row for t in row if t.lower() != "no finding"}, key=str.lower)
    if not _has_pipes(s) and any(row and row[0].lower() == "no finding" for row in items):
        classes = sorted(set(classes) | {"No Finding"}, key=str.lower)
    labels = np.zeros((len(items), len(classes)), np.float32)
    for i, row in enumerate(items):
        if row is None:
            labels[i] = np.nan
            continue
        for t in row:
            if t in classes:
                labels[i, classes.index(t)] = 1.0
    return classes, labels


def _infer_space(classes: list[str], labels: np.ndarray, task: str | None, single_text: bool) -> LabelSpace:
    if task is not None:
        t = TaskType.parse(task)
        if t is TaskType.MULTILABEL:
            return LabelSpace(t, tuple(classes))
        return LabelSpace.exclusive_from(classes) if t is TaskType.BINARY else LabelSpace(t, tuple(classes))
    if not classes:
        raise DataFormatError("The CSV has no label columns (0/1/blank) and no 'labels' column.")
    labelled = np.isfinite(labels).all(axis=1)
    sums = np.nansum(labels, axis=1)
    exclusive = single_text or (labelled.any() and bool(np.all(sums[labelled] == 1)))
    if exclusive and len(classes) >= 2:
        return LabelSpace.exclusive_from(classes)
    return LabelSpace(TaskType.MULTILABEL, tuple(classes))


def _frame(df: pd.DataFrame, csv_path: Path, path_col: str) -> pd.DataFrame:
    def resolve(p: str) -> str:
        if NPZ_REF.match(p):
            return p
        q = Path(p)
        return str(q if q.is_absolute() else (csv_path.parent / q).resolve())

    frame = pd.DataFrame({"path": df[path_col].astype(str).map(resolve)})
    pid_col = _first(list(df.columns), PATIENT_COLUMNS)
    frame["patient_id"] = df[pid_col].astype("string").str.strip() if pid_col else pd.NA
    for col in COLUMNS[2:]:
        if col in df.columns:
            frame[col] = df[col]
    if "study_date" not in df.columns and "date" in df.columns:
        frame["study_date"] = df["date"]
    if "view" not in df.columns and "View Position" in df.columns:
        frame["view"] = df["View Position"]
    for extra in EXTRA_COLUMNS:
        if extra in df.columns:
            frame[extra] = df[extra]
    if "split" in frame.columns:
        bad = set(frame["split"].dropna().astype(str)) - {"train", "val", "test"}
        if bad:
            raise DataFormatError(f"{csv_path}: unknown split values {sorted(bad)}; use train, val or test.")
    return frame
