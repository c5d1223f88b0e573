"""NIH ChestX-ray14: Data_Entry_2017.csv (or Kaggle's sample_labels.csv) and its images folders."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from cxrkit.core.errors import DataFormatError
from cxrkit.core.task import LabelSpace, TaskType
from cxrkit.data.demographics import MAX_AGE, age_group, parse_age, parse_sex
from cxrkit.data.table import CxrTable

log = logging.getLogger(__name__)

NIH_FINDINGS = (
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
)
REQUIRED = ("Image Index", "Finding Labels")


def _read_header(path: Path) -> list[str]:
    try:
        return list(pd.read_csv(path, nrows=0).columns)
    except Exception:
        return []


def find_nih_csv(path: Path) -> Path | None:
    if path.is_file() and path.suffix.lower() == ".csv":
        return path if all(c in _read_header(path) for c in REQUIRED) else None
    if path.is_dir():
        for name in ("Data_Entry_2017.csv", "Data_Entry_2017_v2020.csv", "sample_labels.csv", "labels.csv"):
            cand = path / name
            if cand.is_file() and all(c in _read_header(cand) for c in REQUIRED):
                return cand
    return None


class NihAdapter:
    name = "nih"
    looks_like = "a CSV with 'Image Index' and 'Finding Labels' (Data_Entry_2017.csv), images beside it or in images*/"
    # where to download it: https://nihcc.app.box.com/v/ChestXray-NIHCC (Wang et al., CVPR 2017)

    def detect(self, path: Path) -> bool:
        return find_nih_csv(path) is not None

    def load(self, path: Path, **options) -> CxrTable:
        csv = find_nih_csv(path)
        if csv is None:
            raise DataFormatError(f"{path}: no NIH CSV with columns {list(REQUIRED)} found.")
        root = csv.parent.resolve()
        # Images sit beside the CSV, in images/, or in the official images_001/images ... folders.
        # os.walk: about 3x faster than Path.rglob over the 112,120 files of the full set.
        index = {f: os.path.join(d, f) for d, _, files in os.walk(root) for f in files if f.lower().endswith(".png")}
        frame, labels, unknown = read_nih_csv(csv, index, source=options.get("source") or "nih-chestxray14")
        notes = []
        missing = int(frame["path"].isna().sum())
        if missing:
            notes.append(f"{csv.name}: {missing} rows left out: image file not found under {root}.")
        if unknown:
            notes.append(f"{csv.name}: unknown findings ignored: {unknown}.")
        n_bad_age = int((frame["age"].isna() & frame["raw_age"].notna()).sum())
        if n_bad_age:
            notes.append(f"{csv.name}: {n_bad_age} ages above {MAX_AGE:.0f} years treated as unknown.")
        found = frame["path"].notna().to_numpy()
        if not found.any():
            raise DataFormatError(
                f"{csv}: none of its {len(frame)} images were found under {root}. "
                "Put the PNGs beside the CSV or in images/ (or the official images_0NN/images/ folders)."
            )
        for n in notes:
            log.debug(n)
        frame = frame.drop(columns="raw_age")
        return CxrTable(frame[found], labels[found], LabelSpace(TaskType.MULTILABEL, NIH_FINDINGS), notes)


def read_nih_csv(
    csv: Path, index: dict[str, str], source: str = "nih-chestxray14"
) -> tuple[pd.DataFrame, np.ndarray, dict[str, int]]:
    """Parse an NIH CSV without a per-row Python loop (the full Data_Entry_2017.csv has 112,120 rows).

    Returns the frame (``path`` NA where ``index``, file name -> path, has no image), the 14-finding
    label matrix ('No Finding' is all zeros) and the counts of findings outside the 14.
    """
    df = pd.read_csv(csv, dtype={"Image Index": "string", "Finding Labels": "string"})
    # Few distinct label strings (about 800 in the real CSV): parse each once, then index by row.
    codes, uniques = pd.factorize(df["Finding Labels"].fillna(""))
    cleaned = pd.Series(uniques, dtype="string").str.replace(r"\s*\|\s*", "|", regex=True).str.strip()
    dummies = cleaned.str.get_dummies("|")
    extra = [c for c in dummies.columns if c not in NIH_FINDINGS and c != "No Finding"]
    per_code = np.bincount(codes, minlength=len(uniques))  # rows per distinct string
    unknown = {c: int(per_code @ dummies[c].to_numpy()) for c in extra}
    labels = dummies.reindex(columns=list(NIH_FINDINGS), fill_value=0).to_numpy(np.float32)[codes]
    frame = pd.DataFrame({"path": df["Image Index"].map(index).astype("string")})
    pid = pd.to_numeric(df.get("Patient ID"), errors="coerce") if "Patient ID" in df else None
    frame["patient_id"] = pid.astype("Int64").astype("string") if pid is not None else pd.NA
    frame["view"] = df["View Position"].astype("string").str.strip() if "View Position" in df else pd.NA
    frame["source"] = source
    if "Follow-up #" in df:
        frame["follow_up"] = pd.to_numeric(df["Follow-up #"], errors="coerce").astype("Int64")
    raw_age = df["Patient Age"] if "Patient Age" in df else pd.Series(pd.NA, index=df.index)
    frame["raw_age"] = raw_age
    frame["age"] = parse_age(raw_age)
    frame["age_group"] = age_group(frame["age"])
    frame["sex"] = parse_sex(df["Patient Gender"]) if "Patient Gender" in df else pd.NA
    frame["pre_covid"] = True  # ChestX-ray14 was acquired 1992-2015
    return frame, labels, unknown
