"""Tiny datasets in the layouts the new adapters read (COVID-19 Radiography Database, NIH with demographics)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import write_png


def make_radiography_db(root: Path, with_sheets: bool = True, with_masks: bool = True) -> Path:
    """ROOT/{COVID,Normal,Lung_Opacity,Viral Pneumonia}/images/*.png as published, with sheets and masks."""
    counts = {"COVID": 4, "Normal": 3, "Lung_Opacity": 2, "Viral Pneumonia": 2}
    seed = 0
    for folder, n in counts.items():
        for i in range(1, n + 1):
            name = f"{folder}-{i}.png"
            write_png(root / folder / "images" / name, seed=seed)
            if with_masks and folder == "COVID" and i <= 2:
                write_png(root / folder / "masks" / name, seed=seed + 100)
            seed += 1
    if with_sheets:
        urls = {
            "COVID": ["https://bimcv.cipf.es/bimcv-projects/bimcv-covid19/", "https://bimcv.cipf.es/x", "https://github.com/ieee8023/covid-chestxray-dataset", "https://www.sirm.org/category/covid-19/"],
            "Normal": ["https://www.kaggle.com/c/rsna-pneumonia-detection-challenge/data"] * 2 + ["https://www.kaggle.com/paultimothymooney/chest-xray-pneumonia"],
            "Lung_Opacity": ["https://www.kaggle.com/c/rsna-pneumonia-detection-challenge/data"] * 2,
        }  # fmt: skip
        for folder, rows in urls.items():
            # The Normal sheet writes 'NORMAL-1' for Normal-1.png, without the extension.
            names = [f"{folder.upper() if folder == 'Normal' else folder}-{i}" for i in range(1, len(rows) + 1)]
            pd.DataFrame({"FILE NAME": names, "FORMAT": "PNG", "SIZE": "256*256", "URL": rows}).to_excel(
                root / f"{folder}.metadata.xlsx", index=False
            )
    return root


@pytest.fixture
def radiography_db(tmp_path: Path) -> Path:
    return make_radiography_db(tmp_path / "COVID-19_Radiography_Dataset")


def make_nih_demo(root: Path) -> Path:
    """Data_Entry_2017.csv with Patient Age / Gender / View Position, images in images/."""
    rows = [
        ("00000001_000.png", "Pneumonia", 0, 1, 58, "M", "PA"),
        ("00000001_001.png", "Pneumonia|Effusion", 1, 1, 59, "M", "AP"),
        ("00000002_000.png", "No Finding", 0, 2, 12, "F", "PA"),
        ("00000003_000.png", "Mass", 0, 3, 70, "F", "PA"),
        ("00000004_000.png", "No Finding", 0, 4, 412, "M", "PA"),  # a recording error in NIH's CSV
    ]
    for i, r in enumerate(rows):
        write_png(root / "images" / r[0], seed=i)
    cols = [
        "Image Index",
        "Finding Labels",
        "Follow-up #",
        "Patient ID",
        "Patient Age",
        "Patient Gender",
        "View Position",
    ]
    pd.DataFrame(rows, columns=cols).to_csv(root / "Data_Entry_2017.csv", index=False)
    return root


@pytest.fixture
def nih_demo(tmp_path: Path) -> Path:
    return make_nih_demo(tmp_path / "nih")


def make_pneumoniamnist(path: Path) -> Path:
    rng = np.random.default_rng(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        path,
        test_images=rng.integers(0, 255, (4, 28, 28), dtype=np.uint8),
        test_labels=np.array([[0], [1], [1], [0]], dtype=np.uint8),
    )
    return path
