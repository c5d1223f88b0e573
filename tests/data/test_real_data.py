"""Exact counts on ../shared/data (skipped when absent) and zero patient overlap across splits."""

from __future__ import annotations

import numpy as np
import pytest

from cxrkit.data import assign_splits, leaking_patients, load_dataset, summarize

pytestmark = pytest.mark.real_data


def test_kaggle_train_counts(shared_data):
    t = load_dataset(shared_data / "kaggle-pneumonia" / "train")
    s = summarize(t, size_sample=50)
    assert s["class_counts"] == {"NORMAL": 1341, "PNEUMONIA": 3875}
    assert s["n_images"] == 5216 and s["n_patients"] == 2846
    assert s["n_images_without_patient"] == 0


def test_kaggle_fullres_counts(shared_data):
    s = summarize(load_dataset(shared_data / "kaggle-pneumonia-fullres-sample"), size_sample=20)
    assert s["class_counts"] == {"NORMAL": 100, "PNEUMONIA": 100} and s["n_patients"] == 195


def test_covid_counts(shared_data):
    t = load_dataset(shared_data / "covid-chestxray")
    s = summarize(t, size_sample=20)
    assert s["class_counts"] == {"NORMAL": 19, "PNEUMONIA": 77, "COVID-19": 427}
    assert s["n_patients"] == 305
    assert s["views"] == {"PA": 289, "AP Supine": 132, "AP": 102}
    notes = " | ".join(t.notes)
    assert "78 rows left out: finding 'todo'" in notes and "44 rows left out: view" in notes
    sites = t.frame["site"]
    assert sites.notna().sum() == 488 and sites.nunique() == 101
    hannover = t.frame[sites == "Hannover Medical School, Hannover, Germany"]
    assert hannover["finding"].value_counts().to_dict() == {"COVID-19": 84, "No Finding": 8}


def test_covid_all_views(shared_data):
    t = load_dataset(shared_data / "covid-chestxray", views=None)
    assert len(t) == 566  # 653 rows - 78 todo - 4 ARDS - 5 repeated file names


def test_nih_counts(shared_data):
    s = summarize(load_dataset(shared_data / "nih-1000-64px"), size_sample=20)
    assert s["n_images"] == 794 and s["n_patients"] == 199
    assert s["class_counts"]["Infiltration"] == 142 and s["class_counts"]["Effusion"] == 138
    assert s["class_counts"]["Hernia"] == 9 and s["class_counts"]["Pneumonia"] == 7
    assert s["image_sizes"]["most_common"] == {"64x64": 20}


def test_pneumoniamnist_counts(shared_data):
    t = load_dataset(shared_data / "pneumoniamnist" / "pneumoniamnist.npz")
    assert t.split("train").class_counts() == {"NORMAL": 1213, "PNEUMONIA": 3494}
    assert t.split("val").class_counts() == {"NORMAL": 135, "PNEUMONIA": 389}
    assert summarize(t, size_sample=5)["n_patients"] is None


@pytest.mark.parametrize(
    "folder",
    ["kaggle-pneumonia/train", "kaggle-pneumonia-fullres-sample", "covid-chestxray", "nih-1000-64px"],
)
def test_no_patient_overlap_across_splits(shared_data, folder):
    t = assign_splits(load_dataset(shared_data / folder), seed=0)
    assert leaking_patients(t) == []
    groups = {s: set(t.split(s).frame["patient_id"]) for s in ("train", "val", "test")}
    assert not groups["train"] & groups["val"] and not groups["train"] & groups["test"]
    assert not groups["val"] & groups["test"]


def test_covid19_radiography_db_counts(shared_data):
    t = load_dataset(shared_data / "covid19-radiography-db")
    s = summarize(t, size_sample=5)
    assert s["class_counts"] == {"NORMAL": 2000, "COVID-19": 2557}
    assert s["n_patients"] is None and s["image_sizes"]["most_common"] == {"224x224": 5}
    assert s["sources"] == {"covid19-radiography-db/COVID": 2557, "covid19-radiography-db/Normal": 2000}


def test_nih_256_counts_and_demographics(shared_data):
    t = load_dataset(shared_data / "nih-chestxray14-256")
    s = summarize(t, size_sample=5)
    assert s["n_images"] == 759 and s["n_patients"] == 510
    assert s["class_counts"]["Pneumonia"] == 368
    assert int((t.labels.sum(axis=1) == 0).sum()) == 391  # No Finding
    assert t.frame["sex"].notna().all() and t.frame["view"].isin(["PA", "AP"]).all()
    assert set(t.frame["age_group"].dropna()) <= {"child", "adult", "older"}


def test_every_source_harmonised_and_left_out_in_turn(shared_data):
    from cxrkit.data import VOCABULARY, load_datasets, source_folds

    names = ["kaggle-pneumonia/train", "covid-chestxray", "nih-chestxray14-256", "covid19-radiography-db"]
    t = load_datasets([str(shared_data / n) for n in names], harmonise=True)
    assert t.classes == VOCABULARY and len(t) == 5216 + 523 + 759 + 4557
    folds = {f.held_out: f for f in source_folds(t)}
    assert sorted(folds) == [
        "covid-chestxray",
        "covid19-radiography-db/COVID",
        "covid19-radiography-db/Normal",
        "kaggle-pneumonia",
        "nih-chestxray14",
    ]
    covid = t.labels[:, t.label_space.index("COVID-19")]
    assert int((covid == 1).sum()) == 2557 + 427 and int(np.isnan(covid).sum()) == 0


def test_near_duplicate_hash_finds_resized_copies_and_nothing_across_sources(shared_data):
    """kaggle-pneumonia-fullres-sample holds the same X-rays as kaggle-pneumonia/train, at their real aspect ratio."""
    from cxrkit.data.fingerprint import near_duplicates, pixel_dhashes

    fullres = load_dataset(shared_data / "kaggle-pneumonia-fullres-sample")
    train = load_dataset(shared_data / "kaggle-pneumonia" / "train")
    names = set(fullres.frame["path"].str.rsplit("/", n=1).str[-1])
    originals = train.subset(train.frame["path"].str.rsplit("/", n=1).str[-1].isin(names).to_numpy())
    others = train.subset(np.arange(0, len(train), 25))
    reference = np.concatenate([pixel_dhashes(originals), pixel_dhashes(others)])
    assert len(originals) == 200 and near_duplicates(pixel_dhashes(fullres), reference).all()
    nih = load_dataset(shared_data / "nih-chestxray14-256")
    assert not near_duplicates(pixel_dhashes(nih), reference).any()
