"""MedMNIST .npz files (e.g. pneumoniamnist.npz): train/val/test image arrays and their labels."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from cxrkit.core.errors import DataFormatError
from cxrkit.core.task import LabelSpace, TaskType
from cxrkit.data.adapters.base import Rows, warn_no_patients
from cxrkit.data.images import npz_ref
from cxrkit.data.table import CxrTable

# Class names of the MedMNIST sets that are chest X-rays (from the MedMNIST v2 INFO table).
KNOWN_CLASSES = {
    "pneumoniamnist": ("NORMAL", "PNEUMONIA"),
    "chestmnist": (
        "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
        "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia",
    ),
}  # fmt: skip
SPLITS = {"train": "train", "val": "val", "test": "test"}
# MedMNIST v2 names its files 'pneumoniamnist.npz'; MedMNIST+ adds the size ('pneumoniamnist_224.npz'), and
# users split files ('pneumoniamnist_test.npz'): the dataset is the name up to 'mnist'.
_DATASET = re.compile(r"^([a-z0-9]*mnist)", re.IGNORECASE)
# MedMNIST sets derived from pre-2020 collections: Kermany's pediatric set and NIH ChestX-ray14.
_PRE_COVID = {"pneumoniamnist", "chestmnist"}
_CHILDREN = {"pneumoniamnist"}


def dataset_name(path: Path) -> str:
    """'pneumoniamnist' for pneumoniamnist.npz, pneumoniamnist_64.npz, pneumoniamnist_test.npz ..."""
    m = _DATASET.match(path.stem)
    return m.group(1).lower() if m else path.stem.lower()


class MedMnistAdapter:
    name = "medmnist"
    looks_like = "a .npz with train_images/train_labels (and/or val_, test_) arrays, as MedMNIST v2 ships them"
    # where to download it: https://medmnist.com (Yang et al. 2023); e.g. https://zenodo.org/records/10519652

    def detect(self, path: Path) -> bool:
        if not (path.is_file() and path.suffix.lower() == ".npz"):
            return False
        with np.load(path, allow_pickle=False) as data:
            return any(f"{s}_images" in data.files for s in SPLITS)

    def load(self, path: Path, **options) -> CxrTable:
        with np.load(path, allow_pickle=False) as data:
            present = [s for s in SPLITS if f"{s}_images" in data.files]
            if not present:
                raise DataFormatError(f"{path}: no train_images/val_images/test_images arrays (has {data.files}).")
            for s in present:
                if f"{s}_labels" not in data.files:
                    raise DataFormatError(f"{path}: {s}_images has no {s}_labels array beside it.")
            labels = {s: np.asarray(data[f"{s}_labels"]) for s in present}
        multilabel = any(lab.ndim == 2 and lab.shape[1] > 1 for lab in labels.values())
        stem = dataset_name(path)
        if multilabel:
            width = next(iter(labels.values())).shape[1]
            classes = KNOWN_CLASSES.get(stem, tuple(f"label_{i}" for i in range(width)))
            space = LabelSpace(TaskType.MULTILABEL, classes)
        else:
            n = int(max(lab.max() for lab in labels.values())) + 1
            classes = KNOWN_CLASSES.get(stem, tuple(f"class_{i}" for i in range(max(n, 2))))
            space = (
                LabelSpace.exclusive_from(list(classes))
                if len(classes) == 2
                else LabelSpace(TaskType.MULTICLASS, classes)
            )
        source = options.get("source") or f"medmnist:{stem}"
        rows = Rows.empty()
        for split in present:
            for i, lab in enumerate(labels[split]):
                if multilabel:
                    target = lab.astype(np.float32)
                else:
                    target = np.zeros(len(space.classes), np.float32)
                    target[space.index(classes[int(np.ravel(lab)[0])])] = 1.0
                rows.add(target, path=npz_ref(path.resolve(), f"{split}_images", i), split=SPLITS[split], source=source)
        table = rows.to_table(space, [warn_no_patients(source)])
        if stem in _CHILDREN:
            table.frame["age_group"] = "child"  # Kermany et al.: pediatric patients, 1-5 years
        if stem in _PRE_COVID:
            table.frame["pre_covid"] = True
        return table
