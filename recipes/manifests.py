"""Build the multi-source manifests the shipped `all` and `covid3` recipes train on.

    python recipes/manifests.py [--data ../shared/data] [--out runs/manifests]

Writes (deterministic, seeded subsampling; paths absolute):
  all.csv             multi-label, one vocabulary (NIH 14 + COVID-19 + No Finding), NaN where a source
                      does not label a finding; every source capped so no source dominates
  covid3.csv          NORMAL / PNEUMONIA / COVID-19 (exclusive) from the same sources: adult negatives too
  {all,covid3}_lso_<source>.csv   the same rows with split=val for one whole held-out source, train elsewhere

Sources (column `source`): kaggle-pneumonia (paediatric), covid-chestxray (COVID collection, many sites),
covid19-radiography-db (COVID-19 mostly Spain vs adult USA normals), nih-chestxray14 (256 px + 64 px).
The Radiography DB's normals are RSNA/NIH images: same hospital family as nih-chestxray14.
PneumoniaMNIST is left out: it is the Kaggle set again at 28 px (duplicate images across folds).
A stopgap until cxrkit.data harmonises labels itself; the rows and labels follow the same rules.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from cxrkit.data import load_datasets

NIH14 = (
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia", "Pneumothorax",
    "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia",
)  # fmt: skip
VOCAB = (*NIH14, "COVID-19", "No Finding")
COVID3 = ("NORMAL", "PNEUMONIA", "COVID-19")
# Images per source and class kept (None: all): caps keep the 2-core training short and the sources balanced.
CAPS = {"kaggle-pneumonia": 500, "covid19-radiography-db": 500}


def _row(path, pid, source, view, origin, labels: dict) -> dict:
    row = {"path": path, "patient_id": pid, "source": source, "view": view, "origin": origin}
    row.update({f"label:{c}": labels.get(c, np.nan) for c in VOCAB})
    return row


def _normal() -> dict:
    return {**dict.fromkeys(NIH14, 0.0), "COVID-19": 0.0, "No Finding": 1.0}


def _kaggle(data: Path) -> list[dict]:
    t = load_datasets([str(data / "kaggle-pneumonia/train")])
    rows = []
    for (_, r), y in zip(t.frame.iterrows(), t.labels, strict=True):
        pneu = bool(y[1] == 1)
        lab = {"Pneumonia": 1.0, "COVID-19": 0.0, "No Finding": 0.0} if pneu else _normal()
        rows.append(_row(r.path, f"kaggle:{r.patient_id}", "kaggle-pneumonia", "PA", "Guangzhou", lab))
    return rows


def _covid_collection(data: Path) -> list[dict]:
    t = load_datasets([str(data / "covid-chestxray")])  # the adapter's frontal views, COVID/other pneumonia/normal
    rows = []
    for (_, r), y in zip(t.frame.iterrows(), t.labels, strict=True):
        cls = t.classes[int(np.nanargmax(y))]
        if cls == "NORMAL":
            lab = _normal()
        else:  # COVID-19 is a pneumonia (torchxrayvision labels it so too); other findings unlabelled
            lab = {"Pneumonia": 1.0, "COVID-19": float(cls == "COVID-19"), "No Finding": 0.0}
        rows.append(_row(r.path, f"covid:{r.patient_id}", "covid-chestxray", r.view, "collection", lab))
    return rows


def _radiography_db(data: Path) -> list[dict]:
    rows = []
    root = data / "covid19-radiography-db"
    for folder, covid in (("COVID", True), ("Normal", False)):
        for p in sorted((root / folder / "images").glob("*.png")):
            lab = {"Pneumonia": 1.0, "COVID-19": 1.0, "No Finding": 0.0} if covid else _normal()
            origin = "BIMCV-Spain" if covid else "RSNA-USA"
            # No patient IDs are published: one image per patient (COVID patients may repeat).
            rows.append(_row(str(p), f"rdb:{p.stem}", "covid19-radiography-db", None, origin, lab))
    return rows


def _nih(data: Path) -> list[dict]:
    rows = []
    for folder in ("nih-chestxray14-256", "nih-1000-64px"):
        t = load_datasets([str(data / folder)])
        idx = [t.classes.index(c) for c in NIH14]
        for (_, r), y in zip(t.frame.iterrows(), t.labels, strict=True):
            lab = dict(zip(NIH14, y[idx].astype(float), strict=True))
            lab.update({"COVID-19": 0.0, "No Finding": float(np.nansum(y) == 0)})
            view = r.view if isinstance(r.view, str) else None
            rows.append(_row(r.path, f"nih:{r.patient_id}", "nih-chestxray14", view, folder, lab))
    return rows


def _cap(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """At most CAPS[source] images per (source, COVID-19/Pneumonia/normal) group, a seeded random sample."""
    parts = []
    for (source, _), g in frame.groupby(["source", "_group"], sort=True):
        cap = CAPS.get(source)
        parts.append(g if cap is None or len(g) <= cap else g.sample(n=cap, random_state=seed))
    return pd.concat(parts).sort_index()


def _covid3(frame: pd.DataFrame) -> pd.DataFrame:
    """Exclusive NORMAL / PNEUMONIA / COVID-19 rows (NIH images with other findings only are left out)."""
    g = frame["_group"]
    keep = frame[g.isin(["normal", "pneumonia", "covid"])].drop(columns=[f"label:{c}" for c in VOCAB])
    for c in COVID3:
        keep[f"label:{c}"] = 0.0
    keep.loc[keep["_group"] == "normal", "label:NORMAL"] = 1.0
    keep.loc[keep["_group"] == "pneumonia", "label:PNEUMONIA"] = 1.0
    keep.loc[keep["_group"] == "covid", "label:COVID-19"] = 1.0
    return keep


def _group(frame: pd.DataFrame) -> pd.Series:
    covid, pneu, normal = (frame[f"label:{c}"] == 1 for c in ("COVID-19", "Pneumonia", "No Finding"))
    return pd.Series(np.select([covid, pneu, normal], ["covid", "pneumonia", "normal"], "other"), index=frame.index)


def build(data: Path, out: Path, seed: int = 0) -> list[Path]:
    frame = pd.DataFrame(_kaggle(data) + _covid_collection(data) + _radiography_db(data) + _nih(data))
    frame["_group"] = _group(frame)
    frame = _cap(frame, seed)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    tables = {
        "all": frame.drop(columns="_group"),
        "covid3": _covid3(frame).drop(columns="_group"),
    }
    for name, t in tables.items():
        written.append(_write(t, out / f"{name}.csv"))
        for source in sorted(t["source"].unique()):
            lso = t.assign(split=np.where(t["source"] == source, "val", "train"))
            written.append(_write(lso, out / f"{name}_lso_{source}.csv"))
    return written


def _write(frame: pd.DataFrame, path: Path) -> Path:
    tmp = path.with_suffix(".tmp")
    frame.to_csv(tmp, index=False)
    tmp.replace(path)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--out", default="runs/manifests")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    for p in build(Path(args.data).resolve(), Path(args.out), args.seed):
        df = pd.read_csv(p)
        print(p, len(df), df.groupby(["source", "split"] if "split" in df else ["source"]).size().to_dict())
    return 0


if __name__ == "__main__":
    sys.exit(main())
