"""Image/mask pairs for segmentation: the V7 Labs lung masks of the COVID collection, or any masks.csv.

A mask folder holds ``masks.csv`` with columns ``mask`` (path under the folder) and ``image`` (path
under the folder's parent, as ``covid-chestxray-lungmasks`` publishes it; an absolute path or one
under the folder also works). Patient IDs and views come from the ``patient_id``/``view`` columns
when present, else from the COVID collection's ``metadata.csv`` next to the images' folder.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from cxrkit.core.errors import ConfigError, DataFormatError, LeakageError
from cxrkit.io import read_image

log = logging.getLogger(__name__)
MASKS_CSV = "masks.csv"


def _resolve(root: Path, value: str) -> Path:
    p = Path(value)
    if p.is_absolute():
        return p
    for base in (root.parent, root):
        if (base / p).is_file():
            return base / p
    return root.parent / p


def _covid_metadata(image: Path) -> pd.DataFrame | None:
    for folder in (image.parent.parent, image.parent):
        meta = folder / "metadata.csv"
        if meta.is_file():
            return pd.read_csv(meta, usecols=["filename", "patientid", "view"], dtype=str)
    return None


def load_mask_pairs(root: str | Path) -> pd.DataFrame:
    """A frame of ``image``, ``mask`` (absolute paths), ``patient_id``, ``view`` and ``lung_fraction``.

    Raises:
        DataFormatError: no masks.csv, missing columns, or a listed file that does not exist.
    """
    root = Path(root).expanduser()
    csv = root / MASKS_CSV if root.is_dir() else root
    if not csv.is_file():
        raise DataFormatError(
            f"{root}: no {MASKS_CSV}. A segmentation dataset is a folder with masks.csv (columns mask, image) "
            "and the mask PNGs (255 = lung), e.g. ../shared/data/covid-chestxray-lungmasks."
        )
    root = csv.parent
    df = pd.read_csv(csv, dtype={"mask": str, "image": str})
    missing = [c for c in ("mask", "image") if c not in df.columns]
    if missing:
        raise DataFormatError(f"{csv}: missing column(s) {missing}; it needs 'mask' and 'image'.")
    df["image"] = [str(_resolve(root, v)) for v in df["image"]]
    df["mask"] = [str(_resolve(root, v)) for v in df["mask"]]
    absent = [p for p in [*df["image"], *df["mask"]] if not Path(p).is_file()]
    if absent:
        raise DataFormatError(f"{csv}: {len(absent)} listed files do not exist, e.g. {absent[:3]}.")
    if "patient_id" not in df.columns:
        meta = _covid_metadata(Path(df["image"].iloc[0]))
        if meta is not None:
            meta = meta.drop_duplicates("filename").set_index("filename")
            names = df["image"].map(lambda p: Path(p).name)
            df["patient_id"] = names.map(meta["patientid"])
            if "view" not in df.columns:
                df["view"] = names.map(meta["view"])
    if "patient_id" not in df.columns or df["patient_id"].isna().any():
        log.warning("%s: some images have no patient ID; they are split by image.", csv)
        pid = df["patient_id"] if "patient_id" in df.columns else pd.Series(pd.NA, index=df.index)
        df["patient_id"] = pid.fillna(df["image"])
    if "view" not in df.columns:
        df["view"] = pd.NA
    return df.reset_index(drop=True)


def read_mask(path: str | Path, shape: tuple[int, int] | None = None) -> np.ndarray:
    """A mask PNG as a bool array (pixels above half range are lung); checked against the image's shape."""
    mask = read_image(path) > 0.5
    if shape is not None and mask.shape != tuple(shape):
        raise DataFormatError(
            f"{path}: mask is {mask.shape[1]}x{mask.shape[0]} but its image is {shape[1]}x{shape[0]}. "
            "Fix: save masks at their image's size."
        )
    return mask


def split_pairs_by_patient(pairs: pd.DataFrame, val: float = 0.2, seed: int = 0) -> pd.DataFrame:
    """Add a ``split`` column (train/val) dealing whole patients, so no patient is in both.

    Raises:
        ConfigError: ``val`` outside (0, 1).
        LeakageError: never expected; guards the invariant.
    """
    if not 0 < val < 1:
        raise ConfigError(f"val must be a fraction in (0, 1), got {val}.")
    from sklearn.model_selection import GroupShuffleSplit

    gss = GroupShuffleSplit(n_splits=1, test_size=val, random_state=seed)
    _, val_idx = next(gss.split(pairs, groups=pairs["patient_id"].astype(str)))
    out = pairs.copy()
    out["split"] = "train"
    out.loc[out.index[val_idx], "split"] = "val"
    shared = set(out.loc[out.split == "train", "patient_id"]) & set(out.loc[out.split == "val", "patient_id"])
    if shared:
        raise LeakageError(f"patients in both train and val: {sorted(map(str, shared))[:5]}", sorted(map(str, shared)))
    return out
