"""Reading the full NIH Data_Entry_2017.csv (112,120 rows): a synthetic copy, timed (prints JSON).

    PYTHONPATH=src .venv/bin/python benchmarks/nih_csv.py [--rows 112120] [--with-files]

``parse_s``: ``read_nih_csv`` alone (CSV -> labels, age, sex, view). ``load_s`` (with ``--with-files``):
``load_dataset`` on a folder holding the CSV and one empty PNG file per row in images_001/images ...
(finding the files is part of loading; nothing is decoded).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from cxrkit.data import load_dataset
from cxrkit.data.adapters.nih import read_nih_csv

FINDINGS = ["No Finding"] * 6 + ["Infiltration", "Effusion|Atelectasis", "Pneumonia|Infiltration", "Mass|Nodule"]


def synthetic_csv(path: Path, rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    patients = np.sort(rng.integers(1, 30_806, rows))  # ChestX-ray14 has 30,805 patients
    df = pd.DataFrame(
        {
            "Image Index": [f"{p:08d}_{i:03d}.png" for i, p in enumerate(patients)],
            "Finding Labels": np.array(FINDINGS)[rng.integers(0, len(FINDINGS), rows)],
            "Follow-up #": rng.integers(0, 20, rows),
            "Patient ID": patients,
            "Patient Age": rng.integers(1, 95, rows),
            "Patient Gender": rng.choice(["M", "F"], rows),
            "View Position": rng.choice(["PA", "AP"], rows),
            "OriginalImage[Width": 2500,
            "Height]": 2048,
        }
    )
    df.to_csv(path, index=False)
    return df


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=112_120)
    ap.add_argument("--with-files", action="store_true", help="also time load_dataset with one empty file per row")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        df = synthetic_csv(root / "Data_Entry_2017.csv", args.rows)
        index = {name: f"/images/{name}" for name in df["Image Index"]}
        t0 = time.perf_counter()
        _, labels, _ = read_nih_csv(root / "Data_Entry_2017.csv", index)
        result = {"rows": args.rows, "parse_s": round(time.perf_counter() - t0, 3), "positives": int(labels.sum())}
        if args.with_files:
            for k, chunk in enumerate(np.array_split(df["Image Index"].to_numpy(), 12)):
                folder = root / f"images_{k + 1:03d}" / "images"
                folder.mkdir(parents=True)
                for name in chunk:
                    (folder / name).touch()
            t0 = time.perf_counter()
            table = load_dataset(root)
            result["load_s"] = round(time.perf_counter() - t0, 3)
            result["n_loaded"] = len(table)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
