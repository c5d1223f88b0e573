"""Age groups, sex codes and image eras, defined once for every adapter and for ``cxr evaluate --by``."""

from __future__ import annotations

import numpy as np
import pandas as pd

# Age groups (years): child < 18, adult 18-64, older >= 65 (the usual paediatric / geriatric cut-offs).
AGE_BINS = (0.0, 18.0, 65.0, np.inf)
AGE_GROUPS = ("child", "adult", "older")
# Ages above this are recording errors (NIH lists a few patients as 148 to 414 years old).
MAX_AGE = 120.0

_SEX = {"m": "M", "male": "M", "f": "F", "female": "F"}


def _per_unique(values: pd.Series, parse) -> pd.Series:
    """``parse`` applied to each distinct value once (a 112,120-row CSV has about 100 distinct ages)."""
    codes, uniques = pd.factorize(values)
    if not len(uniques):  # all unknown
        return parse(pd.Series(values, dtype="object"))
    parsed = parse(pd.Series(uniques, dtype="object")).reset_index(drop=True)
    out = parsed.take(np.where(codes < 0, 0, codes)).set_axis(values.index)
    return out.where(codes >= 0)


def parse_age(values: pd.Series) -> pd.Series:
    """Ages in years as float (NaN unknown); '058Y' (NIH sample CSV) and '58' both give 58; > 120 is NaN."""
    return _per_unique(values, _parse_age).astype("float64")


def _parse_age(values: pd.Series) -> pd.Series:
    text = values.astype("string").str.strip()
    digits = text.str.extract(r"^(\d+(?:\.\d+)?)", expand=False).astype("object")
    number = pd.to_numeric(digits, errors="coerce").astype("float64")
    months = text.str.upper().str.endswith("M").fillna(False)
    number = number.where(~months, number / 12.0)
    return number.where((number >= 0) & (number <= MAX_AGE)).astype("float64")


def age_group(ages: pd.Series) -> pd.Series:
    """'child' / 'adult' / 'older' per age in years (NA where unknown)."""
    groups = pd.cut(pd.to_numeric(ages, errors="coerce"), bins=list(AGE_BINS), labels=list(AGE_GROUPS), right=False)
    return groups.astype("string")


def parse_sex(values: pd.Series) -> pd.Series:
    """'M' / 'F' (NA where unknown or another code)."""
    return _per_unique(values, lambda v: v.astype("string").str.strip().str.lower().map(_SEX)).astype("string")
