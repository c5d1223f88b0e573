"""Patient-grouped, stratified splits; k-fold by patient; the leakage check; class balancing."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cxrkit.core.errors import ConfigError, DataFormatError, LeakageError
from cxrkit.data.table import SPLITS, CxrTable

log = logging.getLogger(__name__)


def _strata(table: CxrTable) -> np.ndarray:
    """One stratum per image: its class (exclusive tasks) or its rarest positive finding (multi-label)."""
    labels = np.nan_to_num(table.labels, nan=0.0)
    if not labels.shape[1]:
        return np.zeros(len(table), dtype=int)
    if table.label_space.exclusive:
        return table.class_index()
    prevalence = labels.sum(axis=0)
    rarity = np.where(labels > 0, prevalence[None, :], np.inf)
    rarest = rarity.argmin(axis=1)
    return np.where(labels.sum(axis=1) > 0, rarest, -1)


def _patient_strata(groups: np.ndarray, strata: np.ndarray) -> pd.Series:
    """A patient's stratum: the rarest stratum among their images, so rare classes are spread first."""
    counts = pd.Series(strata).value_counts()
    rank = pd.Series(strata).map(counts).to_numpy()
    df = pd.DataFrame({"group": groups, "stratum": strata, "rank": rank})
    return df.sort_values("rank").drop_duplicates("group").set_index("group")["stratum"]


def assign_splits(table: CxrTable, val: float = 0.15, test: float = 0.15, seed: int = 0) -> CxrTable:
    """Return a copy of ``table`` whose ``split`` column is train / val / test, grouped by patient.

    Patients are shuffled within each stratum and dealt out until each split holds its share of that
    stratum's images. scikit-learn's StratifiedGroupKFold only makes equal folds, which cannot give
    70/15/15; this greedy deal is exact to within one patient per stratum.
    """
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise ConfigError(f"val and test fractions must be in [0, 1) and sum below 1; got val={val}, test={test}.")
    groups = table.group_ids()
    strata = _strata(table)
    patient_stratum = _patient_strata(groups, strata)
    images_per_group = pd.Series(groups).value_counts()
    rng = np.random.default_rng(seed)
    split_of: dict[str, str] = {}
    for stratum in sorted(patient_stratum.unique()):
        patients = patient_stratum.index[patient_stratum == stratum].to_numpy()
        patients = patients[rng.permutation(len(patients))]
        sizes = images_per_group.loc[patients].to_numpy()
        total = sizes.sum()
        quota = {"test": test * total, "val": val * total}
        filled = {"test": 0, "val": 0}
        for patient, size in zip(patients, sizes, strict=True):
            for name in ("test", "val"):
                if filled[name] + size / 2 <= quota[name]:
                    split_of[patient] = name
                    filled[name] += size
                    break
            else:
                split_of[patient] = "train"
    frame = table.frame.copy()
    frame["split"] = [split_of[g] for g in groups]
    out = CxrTable(frame, table.labels, table.label_space, list(table.notes))
    check_no_leakage(out)
    return out


def patient_kfold(table: CxrTable, k: int = 5, seed: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (train_idx, val_idx) for k folds with no patient in two folds, stratified by class."""
    if k < 2:
        raise ConfigError(f"k must be at least 2, got {k}.")
    from sklearn.model_selection import StratifiedGroupKFold  # lazy: inference needs no scikit-learn

    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    yield from splitter.split(np.zeros(len(table)), _strata(table), table.group_ids())


@dataclass(frozen=True)
class SourceFold:
    """One leave-source-out fold: train on every other source, validate on ``held_out``."""

    held_out: str
    train_index: np.ndarray  # row positions in the table
    val_index: np.ndarray


def source_folds(table: CxrTable, column: str = "source") -> list[SourceFold]:
    """One fold per value of ``column`` (sorted): that source's rows validate, all other sources train.

    No source is on both sides of a fold. Rows whose ``column`` is NA belong to no fold (a warning counts
    them). Harmonised tables (:func:`cxrkit.data.harmonise.harmonise`) name copies of a source after it, so
    e.g. PneumoniaMNIST and the Kaggle set are one source.

    Raises:
        DataFormatError: ``column`` is missing or holds fewer than 2 sources.
    """
    if column not in table.frame.columns:
        raise DataFormatError(f"The table has no {column!r} column; leave-source-out folds need one per row.")
    values = table.frame[column].astype("string")
    sources = sorted(values.dropna().unique())
    if len(sources) < 2:
        raise DataFormatError(
            f"Leave-source-out validation needs at least 2 sources in column {column!r}, found "
            f"{sources or 'none'}. Add data from another hospital or collection, or validate by patient instead."
        )
    n_unknown = int(values.isna().sum())
    if n_unknown:
        log.warning("%d rows have no %s and are left out of every leave-source-out fold.", n_unknown, column)
    codes = values.to_numpy(dtype=object, na_value=None)
    known = values.notna().to_numpy()
    folds = []
    for source in sources:
        held = known & (codes == source)
        folds.append(SourceFold(source, np.flatnonzero(known & ~held), np.flatnonzero(held)))
    return folds


def leaking_patients(table: CxrTable) -> list[str]:
    """Patients (known IDs only) whose images fall in more than one split."""
    df = pd.DataFrame({"group": table.group_ids(), "split": table.frame["split"]}).dropna()
    df = df[df["group"].str.startswith("patient:")]
    n_splits = df.groupby("group")["split"].nunique()
    return sorted(g.removeprefix("patient:") for g in n_splits.index[n_splits > 1])


def check_no_leakage(table: CxrTable) -> None:
    """Raise LeakageError naming the patients that appear in more than one split."""
    bad = leaking_patients(table)
    if bad:
        shown = ", ".join(bad[:10]) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
        raise LeakageError(
            f"{len(bad)} patients have images in more than one split: {shown}. "
            "Re-split by patient (`cxr data split`) so validation scores do not lie.",
            patients=bad,
        )


def split_counts(table: CxrTable) -> dict[str, dict[str, int]]:
    """Images per split x class."""
    out: dict[str, dict[str, int]] = {}
    splits = table.frame["split"].fillna("(none)").astype(str)
    for s in [*SPLITS, "(none)"]:
        mask = (splits == s).to_numpy()
        if mask.any():
            out[s] = {c: int(np.nansum(table.labels[mask, i] == 1)) for i, c in enumerate(table.classes)}
    return out


def undersample(table: CxrTable, per_class: int, seed: int = 0) -> CxrTable:
    """At most ``per_class`` images of each class (exclusive tasks), as the COVID studies did with 100."""
    if not table.label_space.exclusive:
        raise ConfigError("Undersampling to N per class needs exclusive classes; use class weights for multi-label.")
    rng = np.random.default_rng(seed)
    idx = table.class_index()
    keep, short = [], []
    for c in range(len(table.classes)):
        rows = np.flatnonzero(idx == c)
        if len(rows) < per_class:
            short.append(f"{table.classes[c]} has only {len(rows)} of the {per_class} asked for")
        keep.extend(rng.choice(rows, size=min(per_class, len(rows)), replace=False).tolist())
    out = table.subset(np.array(sorted(keep), dtype=int))
    if short:
        note = f"undersampling to {per_class} per class: " + "; ".join(short) + " (all of them kept)"
        log.warning("%s", note)
        out.notes.append(note)
    return out


def class_weights(table: CxrTable) -> np.ndarray:
    """Per-class loss weights.

    Exclusive tasks: inverse frequency, n / (C * n_c) (scikit-learn's 'balanced'); for a binary task
    one number, the positive weight n_neg / n_pos. Multi-label: n_neg / n_pos per finding, NaN ignored.
    """
    lab = table.labels
    if table.label_space.exclusive:
        counts = np.nansum(lab == 1, axis=0).astype(np.float64)
        if table.task.value == "binary":
            return np.array([counts[0] / max(counts[1], 1.0)], dtype=np.float32)
        return (counts.sum() / (len(counts) * np.maximum(counts, 1.0))).astype(np.float32)
    pos = np.nansum(lab == 1, axis=0).astype(np.float64)
    neg = np.nansum(lab == 0, axis=0).astype(np.float64)
    return (neg / np.maximum(pos, 1.0)).astype(np.float32)
