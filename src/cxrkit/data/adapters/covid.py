"""COVID-19 image data collection (Cohen et al., github.com/ieee8023/covid-chestxray-dataset): metadata.csv."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pandas as pd

from cxrkit.core.errors import DataFormatError
from cxrkit.core.task import LabelSpace
from cxrkit.data.adapters.base import Rows, one_hot
from cxrkit.data.demographics import age_group, parse_age, parse_sex
from cxrkit.data.table import CxrTable

log = logging.getLogger(__name__)

REQUIRED = ("patientid", "finding", "filename", "modality")
DEFAULT_VIEWS = ("PA", "AP", "AP Supine")

# finding (lower case) -> task class. Class names match the Kaggle folders so the two combine.
# ARDS alone is a syndrome, not a pneumonia: left out (counted) unless a user maps it.
DEFAULT_FINDING_MAP = {
    "covid-19": "COVID-19",
    "covid-19, ards": "COVID-19",
    "no finding": "NORMAL",
    "pneumonia": "PNEUMONIA",
    "sars": "PNEUMONIA",
    "mers": "PNEUMONIA",
    "pneumocystis": "PNEUMONIA",
    "streptococcus": "PNEUMONIA",
    "klebsiella": "PNEUMONIA",
    "mycoplasma bacterial pneumonia": "PNEUMONIA",
    "legionella": "PNEUMONIA",
    "lipoid": "PNEUMONIA",
    "varicella": "PNEUMONIA",
    "e.coli": "PNEUMONIA",
    "bacterial": "PNEUMONIA",
    "influenza": "PNEUMONIA",
    "chlamydophila": "PNEUMONIA",
    "aspergillosis": "PNEUMONIA",
    "nocardia": "PNEUMONIA",
    "herpes pneumonia": "PNEUMONIA",
}
CLASS_ORDER = ("NORMAL", "PNEUMONIA", "COVID-19")


def _metadata(path: Path) -> Path | None:
    cand = path / "metadata.csv" if path.is_dir() else path
    if cand.is_file() and cand.suffix.lower() == ".csv":
        try:
            cols = set(pd.read_csv(cand, nrows=0).columns)
        except Exception:
            return None
        if set(REQUIRED) <= cols:
            return cand
    return None


def _day_precise_date(text: str) -> pd.Timestamp | None:
    """A date only when the day is given: '2020' or 'March 2020' would order all studies as equal."""
    text = text.strip()
    if not text or re.fullmatch(r"(\d{4}|[A-Za-z]+,?\s+\d{4}|\d{4}-\d{2})", text):
        return None
    value = pd.to_datetime(text, errors="coerce", format="mixed")
    return None if pd.isna(value) else value


class CovidAdapter:
    name = "covid"
    looks_like = "metadata.csv with patientid, offset, finding, view, modality, folder, filename (ieee8023 layout)"
    # where to download it: https://github.com/ieee8023/covid-chestxray-dataset

    def detect(self, path: Path) -> bool:
        return _metadata(path) is not None

    def load(
        self,
        path: Path,
        views: tuple[str, ...] | None = DEFAULT_VIEWS,
        finding_map: dict[str, str] | None = None,
        **options,
    ) -> CxrTable:
        meta = _metadata(path)
        if meta is None:
            raise DataFormatError(f"{path}: no metadata.csv with columns {list(REQUIRED)}.")
        mapping = {k.lower(): v for k, v in (finding_map or DEFAULT_FINDING_MAP).items()}
        df = pd.read_csv(meta, dtype=str, keep_default_na=False)
        notes: list[str] = []

        def drop(mask: pd.Series, why: str) -> pd.DataFrame:
            n = int(mask.sum())
            if n:
                notes.append(f"{n} rows left out: {why}.")
            return df[~mask]

        df = drop(df["modality"].str.strip().str.lower() != "x-ray", "not X-ray (CT is not supported)")
        df = drop(df["finding"].str.strip().str.lower() == "todo", "finding 'todo' (not yet labelled upstream)")
        if views:
            wanted = {v.lower() for v in views}
            df = drop(~df["view"].str.strip().str.lower().isin(wanted), f"view not in {list(views)}")
        df = drop(~df["finding"].str.strip().str.lower().isin(mapping), "finding not mapped to a class")
        df = drop(df.duplicated("filename", keep="first"), "the same filename listed twice")
        classes = [c for c in CLASS_ORDER if c in set(mapping.values())]
        classes += sorted(set(mapping.values()) - set(classes))
        space = LabelSpace.exclusive_from(classes)
        rows = Rows.empty()
        missing = 0
        for rec in df.to_dict("records"):
            folder = rec.get("folder") or "images"
            img = meta.parent / folder / rec["filename"]
            if not img.is_file():
                missing += 1
                continue
            offset = pd.to_numeric(rec.get("offset", ""), errors="coerce")
            date = _day_precise_date(rec.get("date") or "")
            rows.add(
                one_hot(space.index(mapping[rec["finding"].strip().lower()]), len(space.classes)),
                path=str(img.resolve()),
                patient_id=str(rec["patientid"]).strip() or None,
                offset=float(offset) if pd.notna(offset) else None,
                study_date=date.date().isoformat() if date is not None else None,
                view=rec.get("view") or None,
                finding=rec["finding"],
                license=rec.get("license") or None,
                age=rec.get("age") or None,
                sex=rec.get("sex") or None,
                # the hospital or city: the collection gathers many sites, so `--by site` and site-out
                # validation can ask how a model does in one it never saw (recipes/covid3_site_out.py)
                site=(rec.get("location") or "").strip() or None,
                source=options.get("source") or "covid-chestxray",
            )
        if missing:
            notes.append(f"{missing} rows left out: image file missing under {meta.parent}.")
        if not rows.records:
            raise DataFormatError(f"{meta}: no usable rows remain ({'; '.join(notes)}).")
        for n in notes:
            log.debug("covid-chestxray: %s", n)
        table = rows.to_table(space, notes)
        table.frame["age"] = parse_age(table.frame["age"])
        table.frame["age_group"] = age_group(table.frame["age"])
        table.frame["sex"] = parse_sex(table.frame["sex"])
        return table
