"""One multi-label vocabulary across datasets (as torchxrayvision's ``relabel_dataset``), NaN where unlabelled.

Vocabulary (``VOCABULARY``): the 14 NIH ChestX-ray14 findings (Pneumonia is one of them), ``Lung Opacity``,
``COVID-19`` and ``No Finding``. ``Lung Opacity`` is kept as its own finding because the COVID-19 Radiography
Database labels it (RSNA's "Lung Opacity": an opacity suspicious for pneumonia, neither a confirmed pneumonia nor
one NIH finding); folding it into Pneumonia would invent pneumonia labels, and it costs nothing elsewhere (NaN).

What each label of a source says (``harmonise``):
- a normal class (NORMAL, No Finding): ``No Finding`` 1 and every other finding 0;
- any other class: that finding 1 and ``No Finding`` 0; in an exclusive table the sibling classes are 0
  (the collection's PNEUMONIA rows are not COVID-19), except that a COVID-19, Lung Opacity or Pneumonia row
  leaves the other two of Pneumonia / Lung Opacity unknown (those folders split images by origin, not by
  what they show); every other finding stays NaN (a pneumonia image may also show an effusion);
- ``COVID-19`` 1 implies ``Pneumonia`` 1 (COVID-19 is a viral pneumonia: torchxrayvision's hierarchy
  Pneumonia/Viral/COVID-19); ``covid_is_pneumonia=False`` leaves Pneumonia unknown for those rows instead;
- an image taken before the pandemic (``pre_covid`` set by the adapter: NIH, Kermany's Kaggle set, RSNA) is
  ``COVID-19`` 0;
- a multi-label table with all 14 NIH findings: ``No Finding`` is 1 where all 14 are 0, else 0.

Per row the table keeps ``source`` (the institution or collection: what leave-source-out holds out),
``dataset`` (the collection it was loaded from), ``age_group``, ``sex`` and ``view`` (NA where unknown).
Sources that are copies of another one are given that one's name (``SOURCE_ALIASES``), so that
leave-source-out folds never put the same images on both sides.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from cxrkit.core.task import LabelSpace, TaskType
from cxrkit.data.adapters.nih import NIH_FINDINGS
from cxrkit.data.table import CxrTable

log = logging.getLogger(__name__)

NO_FINDING = "No Finding"
COVID = "COVID-19"
PNEUMONIA = "Pneumonia"
LUNG_OPACITY = "Lung Opacity"
VOCABULARY: tuple[str, ...] = (*NIH_FINDINGS, LUNG_OPACITY, COVID, NO_FINDING)
DEMOGRAPHIC_COLUMNS = ("age_group", "sex", "view")
_COVID_COL = VOCABULARY.index(COVID)

# Dataset class names (lower case, '_' and '-' as ' ') -> vocabulary names.
_ALIASES = {
    "normal": NO_FINDING,
    "no finding": NO_FINDING,
    "healthy": NO_FINDING,
    "pneumonia": PNEUMONIA,
    "viral pneumonia": PNEUMONIA,
    "bacterial pneumonia": PNEUMONIA,
    "covid": COVID,
    "covid 19": COVID,
    "lung opacity": LUNG_OPACITY,
    **{f.lower().replace("_", " "): f for f in NIH_FINDINGS},
}
# Sources that are copies of another source's images (PneumoniaMNIST is Kermany's set at 28 px; the
# full-resolution sample duplicates kaggle-pneumonia/train).
SOURCE_ALIASES = {
    "medmnist:pneumoniamnist": "kaggle-pneumonia",
    "kaggle-pneumonia-fullres-sample": "kaggle-pneumonia",
    "medmnist:chestmnist": "nih-chestxray14",
}


def vocabulary_name(name: str) -> str | None:
    """The vocabulary name of a dataset class ('NORMAL' -> 'No Finding'), or None if it has none."""
    return _ALIASES.get(name.strip().lower().replace("_", " ").replace("-", " "))


def is_harmonised(table: CxrTable) -> bool:
    return table.task is TaskType.MULTILABEL and tuple(table.classes[: len(VOCABULARY)]) == VOCABULARY


def harmonise(table: CxrTable, covid_is_pneumonia: bool = True) -> CxrTable:
    """``table`` relabelled to ``VOCABULARY`` (multi-label, 1 / 0 / NaN); see the module docstring.

    Classes with no vocabulary name (e.g. 'Tuberculosis') are appended as extra columns, NaN for other
    sources. Rows with no label at all stay all NaN.
    """
    if is_harmonised(table):
        return table
    extras = [c for c in table.classes if vocabulary_name(c) is None]
    vocab = [*VOCABULARY, *extras]
    col = {c: vocab.index(vocabulary_name(c) or c) for c in table.classes}
    out = np.full((len(table), len(vocab)), np.nan, np.float32)
    nf = vocab.index(NO_FINDING)
    if table.label_space.exclusive:
        _exclusive(table, out, col, nf)
    else:
        _multilabel(table, out, col, nf)
    if covid_is_pneumonia:
        out[out[:, vocab.index(COVID)] == 1, vocab.index(PNEUMONIA)] = 1.0
    pre_covid = _flag(table.frame, "pre_covid")
    cv = vocab.index(COVID)
    out[pre_covid & np.isnan(out[:, cv]), cv] = 0.0
    frame = _frame(table.frame)
    notes = list(table.notes)
    if extras:
        notes.append(f"classes outside the harmonised vocabulary kept as extra findings: {extras}")
    return CxrTable(frame, out, LabelSpace(TaskType.MULTILABEL, tuple(vocab)), notes)


def _exclusive(table: CxrTable, out: np.ndarray, col: dict[str, int], nf: int) -> None:
    opacities = {VOCABULARY.index(PNEUMONIA), VOCABULARY.index(LUNG_OPACITY)}
    for j, c in enumerate(table.classes):
        rows = table.labels[:, j] == 1
        if col[c] == nf:
            out[rows] = 0.0  # a normal image shows none of the findings
        else:
            # Exclusive: not the other classes of this source. But folders of opacity-type classes
            # (COVID-19, Lung Opacity, Pneumonia) split by origin, not by what the image shows: a COVID-19
            # or RSNA opacity image is not thereby free of pneumonia or opacity (unknown instead).
            siblings = [k for k in set(col.values()) if not (k in opacities and col[c] in opacities | {_COVID_COL})]
            out[np.ix_(rows, siblings)] = 0.0
            out[rows, nf] = 0.0
        out[rows, col[c]] = 1.0


def _multilabel(table: CxrTable, out: np.ndarray, col: dict[str, int], nf: int) -> None:
    for j, c in enumerate(table.classes):
        out[:, col[c]] = np.fmax(out[:, col[c]], table.labels[:, j])
    if nf not in col.values() and set(NIH_FINDINGS) <= set(table.classes):
        nih = table.labels[:, [table.classes.index(f) for f in NIH_FINDINGS]]
        complete = np.isfinite(nih).all(axis=1)
        normal = complete & (np.nansum(nih, axis=1) == 0)
        out[np.nansum(nih, axis=1) > 0, nf] = 0.0
        out[normal] = np.where(np.isnan(out[normal]), 0.0, out[normal])  # every other finding absent too
        out[normal, nf] = 1.0


def _flag(frame: pd.DataFrame, column: str) -> np.ndarray:
    if column not in frame.columns:
        return np.zeros(len(frame), dtype=bool)
    return frame[column].astype("boolean").fillna(False).to_numpy(dtype=bool)


def _frame(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    if "dataset" not in frame.columns:
        frame["dataset"] = frame["source"]
    frame["dataset"] = frame["dataset"].fillna(frame["source"])
    frame["source"] = frame["source"].map(lambda s: SOURCE_ALIASES.get(s, s) if isinstance(s, str) else s)
    for column in DEMOGRAPHIC_COLUMNS:
        if column not in frame.columns:
            frame[column] = pd.NA
    return frame


def drop_unlabelled_findings(table: CxrTable) -> CxrTable:
    """Drop findings with no positive image (a model must not learn an output that never occurs)."""
    keep = [i for i in range(len(table.classes)) if np.nansum(table.labels[:, i] == 1) > 0]
    if len(keep) == len(table.classes):
        return table
    dropped = [c for i, c in enumerate(table.classes) if i not in keep]
    log.info("findings with no positive image dropped: %s", dropped)
    space = LabelSpace(TaskType.MULTILABEL, tuple(table.classes[i] for i in keep))
    return table.with_label_space(space, table.labels[:, keep])
