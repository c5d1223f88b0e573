"""COVID-19 Radiography Database layout, NIH demographics, MedMNIST file names, age groups."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from cxrkit.core.task import TaskType
from cxrkit.data import detect_format, load_dataset, summarize
from cxrkit.data.adapters.nih import read_nih_csv
from cxrkit.data.adapters.radiography_db import url_source
from cxrkit.data.demographics import age_group, parse_age, parse_sex
from tests.conftest import write_png
from tests.data.conftest import make_pneumoniamnist, make_radiography_db


def test_radiography_db_layout_classes_masks_and_sheets(radiography_db):
    assert detect_format(radiography_db) == "radiography"
    t = load_dataset(radiography_db)
    assert t.task is TaskType.MULTICLASS
    assert t.classes == ("NORMAL", "PNEUMONIA", "COVID-19", "Lung Opacity")
    assert t.class_counts() == {"NORMAL": 3, "PNEUMONIA": 2, "COVID-19": 4, "Lung Opacity": 2}
    by_name = t.frame.assign(name=t.frame["path"].str.rsplit("/", n=1).str[-1]).set_index("name")
    assert by_name.loc["COVID-1.png", "mask_path"].endswith("COVID/masks/COVID-1.png")
    assert pd.isna(by_name.loc["COVID-3.png", "mask_path"])
    # The xlsx URL names the institution; RSNA images are ChestX-ray14 images, Kermany's are kaggle-pneumonia.
    assert by_name.loc["COVID-1.png", "source"] == "bimcv"
    assert by_name.loc["COVID-3.png", "source"] == "covid-chestxray"
    assert by_name.loc["Normal-1.png", "source"] == "nih-chestxray14"  # sheet says NORMAL-1
    assert by_name.loc["Normal-3.png", "source"] == "kaggle-pneumonia"
    assert by_name.loc["Normal-3.png", "age_group"] == "child"
    assert by_name.loc["Viral Pneumonia-1.png", "source"] == "covid19-radiography-db/Viral Pneumonia"  # no sheet
    assert by_name.loc["Viral Pneumonia-1.png", "age_group"] == "child"
    assert t.frame["dataset"].eq("covid19-radiography-db").all()
    assert t.frame["patient_id"].isna().all() and any("no patient IDs" in n for n in t.notes)
    assert not by_name.loc["COVID-2.png", "pre_covid"]
    assert bool(by_name.loc["Normal-2.png", "pre_covid"])


def test_radiography_db_subset_without_sheets_sources_per_folder(tmp_path):
    root = make_radiography_db(tmp_path / "db", with_sheets=False, with_masks=False)
    for d in ("Lung_Opacity", "Viral Pneumonia"):
        for p in (root / d / "images").iterdir():
            p.unlink()
    t = load_dataset(root)
    assert t.task is TaskType.BINARY and t.classes == ("NORMAL", "COVID-19")
    assert t.frame["source"].value_counts().to_dict() == {
        "covid19-radiography-db/COVID": 4,
        "covid19-radiography-db/Normal": 3,
    }
    assert "mask_path" not in t.frame.columns


def test_plain_class_folders_are_not_the_radiography_db(kaggle_tree, tmp_path):
    assert detect_format(kaggle_tree) == "folder"
    write_png(tmp_path / "COVID" / "a.png")  # class folders without images/: the folder layout
    write_png(tmp_path / "Normal" / "b.png", seed=1)
    assert detect_format(tmp_path) == "folder"


def test_url_source():
    assert url_source("https://www.kaggle.com/c/rsna-pneumonia-detection-challenge/data") == "nih-chestxray14"
    assert url_source("https://www.example.org/cases/1") == "example.org"
    assert url_source("") is None


def test_nih_keeps_age_sex_view(nih_demo):
    t = load_dataset(nih_demo)
    f = t.frame.assign(name=t.frame["path"].str.rsplit("/", n=1).str[-1]).set_index("name")
    assert f["sex"].tolist() == ["M", "M", "F", "F", "M"]
    assert f["view"].tolist() == ["PA", "AP", "PA", "PA", "PA"]
    assert f.loc["00000002_000.png", "age_group"] == "child"
    assert f.loc["00000001_000.png", "age_group"] == "adult"
    assert f.loc["00000003_000.png", "age_group"] == "older"
    assert pd.isna(f.loc["00000004_000.png", "age"])  # 412 years: a recording error, unknown
    assert any("1 ages above 120" in n for n in t.notes)
    s = summarize(t, size_sample=0)
    assert s["age_groups"] == {"adult": 2, "child": 1, "older": 1, "(unknown)": 1}
    assert s["sexes"] == {"M": 3, "F": 2}


def test_demographics_parsing():
    ages = parse_age(pd.Series(["058Y", "17", "65", None, "6M", "999"]))
    assert ages.iloc[0] == 58 and ages.iloc[4] == 0.5 and ages.isna().tolist()[3:] == [True, False, True]
    assert age_group(ages).tolist()[:3] == ["adult", "child", "older"]
    assert age_group(pd.Series([17.99, 18.0, 64.9, 65.0])).tolist() == ["child", "adult", "adult", "older"]
    assert parse_sex(pd.Series(["M", "female", "F ", "O", None])).tolist()[:3] == ["M", "F", "F"]


def test_nih_full_size_csv_reads_fast(tmp_path):
    """The official Data_Entry_2017.csv has 112,120 rows; parsing it is vectorised (no per-row Python)."""
    n = 112_120
    rng = np.random.default_rng(0)
    findings = np.array(["No Finding", "Pneumonia", "Effusion|Infiltration", "Mass|Nodule|Atelectasis", "Hernia"])
    df = pd.DataFrame(
        {
            "Image Index": [f"{i:08d}_000.png" for i in range(n)],
            "Finding Labels": findings[rng.integers(0, len(findings), n)],
            "Follow-up #": 0,
            "Patient ID": np.arange(n),
            "Patient Age": rng.integers(1, 95, n),
            "Patient Gender": rng.choice(["M", "F"], n),
            "View Position": rng.choice(["PA", "AP"], n),
        }
    )
    csv = tmp_path / "Data_Entry_2017.csv"
    df.to_csv(csv, index=False)
    index = {f"{i:08d}_000.png": f"/x/{i:08d}_000.png" for i in range(n)}
    started = time.perf_counter()
    frame, labels, unknown = read_nih_csv(csv, index)
    seconds = time.perf_counter() - started
    assert labels.shape == (n, 14) and not unknown and frame["path"].notna().all()
    assert labels.sum() == sum(len(f.split("|")) for f in df["Finding Labels"] if f != "No Finding")
    assert seconds < 15, f"reading a 112,120-row NIH CSV took {seconds:.1f} s"


@pytest.mark.parametrize(
    "name", ["pneumoniamnist.npz", "pneumoniamnist_64.npz", "pneumoniamnist_128.npz", "pneumoniamnist_224.npz", "pneumoniamnist_test.npz"]
)  # fmt: skip
def test_medmnist_class_names_from_file_prefix(tmp_path, name):
    t = load_dataset(make_pneumoniamnist(tmp_path / name))
    assert t.classes == ("NORMAL", "PNEUMONIA")
    assert t.frame["source"].eq("medmnist:pneumoniamnist").all()
    assert t.frame["age_group"].eq("child").all() and t.frame["pre_covid"].all()


def test_kaggle_folder_rows_are_children(kaggle_tree):
    t = load_dataset(kaggle_tree)
    assert t.frame["age_group"].eq("child").all() and t.frame["pre_covid"].all()


def test_covid_collection_keeps_age_and_sex(tmp_path):
    rows = [("1", "COVID-19", "PA", "a.png", "65", "M"), ("2", "No Finding", "PA", "b.png", "8", "F")]
    df = pd.DataFrame(rows, columns=["patientid", "finding", "view", "filename", "age", "sex"])
    df["modality"], df["folder"] = "X-ray", "images"
    df.to_csv(tmp_path / "metadata.csv", index=False)
    for i, r in enumerate(rows):
        write_png(tmp_path / "images" / r[3], seed=i)
    t = load_dataset(tmp_path)
    assert t.frame["age"].tolist() == [65.0, 8.0]
    assert t.frame["age_group"].tolist() == ["older", "child"] and t.frame["sex"].tolist() == ["M", "F"]
