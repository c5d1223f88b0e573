"""NIH ChestX-ray14: Data_Entry_2017.csv (or Kaggle's sample_labels.csv) and its images folders."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from cxrkit.core.errors import DataFormatError
from cxrkit.core.task import LabelSpace, TaskType
from cxrkit.data.adapters.base import Rows
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
    source_url = "https://nihcc.app.box.com/v/ChestXray-NIHCC (Wang et al., CVPR 2017)"

    def detect(self, path: Path) -> bool:
        return find_nih_csv(path) is not None

    def load(self, path: Path, **options) -> CxrTable:
        csv = find_nih_csv(path)
        if csv is None:
            raise DataFormatError(f"{path}: no NIH CSV with columns {list(REQUIRED)} found.")
        df = pd.read_csv(csv)
        root = csv.parent
        # Images sit beside the CSV, in images/, or in the official images_001/images ... folders.
        index = {p.name: p for p in root.rglob("*.png")}
        space = LabelSpace(TaskType.MULTILABEL, NIH_FINDINGS)
        rows = Rows.empty()
        unknown: dict[str, int] = {}
        missing = 0
        for rec in df.to_dict("records"):
            img = index.get(str(rec["Image Index"]))
            if img is None:
                missing += 1
                continue
            label = np.zeros(len(NIH_FINDINGS), np.float32)
            for finding in str(rec["Finding Labels"]).split("|"):
                finding = finding.strip()
                if finding in ("No Finding", ""):
                    continue
                if finding in NIH_FINDINGS:
                    label[NIH_FINDINGS.index(finding)] = 1.0
                else:
                    unknown[finding] = unknown.get(finding, 0) + 1
            pid, follow = rec.get("Patient ID"), rec.get("Follow-up #")
            rows.add(
                label,
                path=str(img.resolve()),
                patient_id=str(int(pid)) if pd.notna(pid) else None,
                view=rec.get("View Position"),
                follow_up=int(follow) if pd.notna(follow) else None,
                source=options.get("source") or "nih-chestxray14",
            )
        notes = []
        if missing:
            notes.append(f"{csv.name}: {missing} rows left out: image file not found under {root}.")
        if unknown:
            notes.append(f"{csv.name}: unknown findings ignored: {unknown}.")
        if not rows.records:
            raise DataFormatError(
                f"{csv}: none of its {len(df)} images were found under {root}. "
                "Put the PNGs beside the CSV or in images/ (or the official images_0NN/images/ folders)."
            )
        for n in notes:
            log.debug(n)
        return rows.to_table(space, notes)
