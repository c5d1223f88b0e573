"""Folder-per-class layouts: root/{class}/img and root/{split}/{class}/img (the Kaggle pneumonia layout).

A folder of images with no class folders loads as an unlabelled table (for prediction and indexing).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from cxrkit.core.errors import DataFormatError
from cxrkit.core.task import LabelSpace, TaskType
from cxrkit.data.adapters.base import Rows, one_hot, warn_no_patients
from cxrkit.data.table import CxrTable
from cxrkit.io.decode import IMAGE_EXTENSIONS

SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}

# Kaggle (Kermany) file names carry the patient: person1_bacteria_1.jpeg, IM-0115-0001.jpeg,
# NORMAL2-IM-0401-0001.jpeg.
KAGGLE_PATIENT = (
    re.compile(r"^(person\d+)_", re.IGNORECASE),
    re.compile(r"^((?:NORMAL2-)?IM-\d+)-\d+", re.IGNORECASE),
)


def kaggle_patient(filename: str) -> str | None:
    for pattern in KAGGLE_PATIENT:
        m = pattern.match(filename)
        if m:
            return m.group(1)
    return None


def mark_kermany(table: CxrTable) -> None:
    """Rows whose file names follow Kermany's scheme are of children (1-5 years) imaged before 2018."""
    kermany = table.frame["patient_id"].notna()
    if kermany.any():
        table.frame["age_group"] = pd.Series(pd.NA, index=table.frame.index, dtype="string").mask(kermany, "child")
        table.frame["pre_covid"] = kermany.where(kermany, pd.NA).astype("boolean")


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))


class FolderAdapter:
    name = "folder"
    looks_like = "ROOT/{class}/*.png|jpg|dcm or ROOT/{train,val,test}/{class}/*; a flat folder loads unlabelled"
    # where to download it: e.g. https://www.kaggle.com/datasets/paultimothymooney/chest-xray-pneumonia

    def detect(self, path: Path) -> bool:
        if not path.is_dir():
            return False
        if any(_images(path)):
            return True
        return any(any(_images(d)) or any(any(_images(s)) for s in _subdirs(d)) for d in _subdirs(path))

    def _class_dirs(self, path: Path) -> list[tuple[str | None, Path]]:
        """(split, class_dir) pairs, with split None when the layout has no split level."""
        subdirs = _subdirs(path)
        split_dirs = [d for d in subdirs if d.name.lower() in SPLIT_NAMES]
        if split_dirs and len(split_dirs) == len(subdirs):
            return [(SPLIT_NAMES[s.name.lower()], c) for s in split_dirs for c in _subdirs(s)]
        return [(None, d) for d in subdirs]

    def load(self, path: Path, **options) -> CxrTable:
        # ROOT/train/... is named after its parent (kaggle-pneumonia/train -> kaggle-pneumonia).
        source = options.get("source") or (path.parent.name if path.name.lower() in SPLIT_NAMES else path.name)
        pairs = [(s, d) for s, d in self._class_dirs(path) if _images(d)]
        if not pairs:
            return self._load_flat(path, source)
        classes = sorted({d.name for _, d in pairs}, key=str.lower)
        space = LabelSpace.exclusive_from(classes) if len(classes) >= 2 else LabelSpace(TaskType.MULTILABEL, classes)
        rows = Rows.empty()
        for split, class_dir in pairs:
            target = one_hot(space.index(class_dir.name), len(space.classes))
            for img in _images(class_dir):
                rows.add(
                    target, path=str(img.resolve()), patient_id=kaggle_patient(img.name), split=split, source=source
                )
        table = rows.to_table(space)
        mark_kermany(table)
        if not table.has_patients:
            table.notes.append(warn_no_patients(source))
        elif table.frame["patient_id"].isna().any():
            n = int(table.frame["patient_id"].isna().sum())
            table.notes.append(f"{source}: {n} file names carry no patient ID; those images are split by image.")
        return table

    def _load_flat(self, path: Path, source: str) -> CxrTable:
        images = _images(path)
        if not images:
            raise DataFormatError(f"{path}: no images (.png, .jpg, .jpeg, .dcm) in it or in its class folders.")
        rows = Rows.empty()
        for img in images:
            rows.add([], path=str(img.resolve()), patient_id=kaggle_patient(img.name), source=source)
        space = LabelSpace(TaskType.MULTILABEL, ())
        table = rows.to_table(space, [f"{source}: a flat folder, loaded unlabelled"])
        mark_kermany(table)
        table.labels = np.zeros((len(images), 0), np.float32)
        return table
