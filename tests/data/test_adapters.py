from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cxrkit.core.errors import DataFormatError, UnknownNameError
from cxrkit.core.task import TaskType
from cxrkit.data import combine, detect_format, load_dataset, load_datasets, write_manifest
from cxrkit.data.adapters.folder import kaggle_patient
from cxrkit.data.images import load_image
from tests.conftest import gradient, write_dicom, write_png


@pytest.mark.parametrize(
    ("name", "patient"),
    [
        ("person1_bacteria_1.jpeg", "person1"),
        ("person1000_virus_1681.jpeg", "person1000"),
        ("IM-0115-0001.jpeg", "IM-0115"),
        ("NORMAL2-IM-0401-0001.jpeg", "NORMAL2-IM-0401"),
        ("NORMAL2-IM-0588-0001-0002.jpeg", "NORMAL2-IM-0588"),
        ("scan.png", None),
    ],
)
def test_kaggle_patient_from_file_name(name, patient):
    assert kaggle_patient(name) == patient


def test_folder_with_split_level(kaggle_tree):
    t = load_dataset(kaggle_tree)
    assert detect_format(kaggle_tree) == "folder"
    assert t.task is TaskType.BINARY and t.classes == ("NORMAL", "PNEUMONIA")
    assert len(t) == 20
    assert t.class_counts() == {"NORMAL": 8, "PNEUMONIA": 12}
    assert set(t.frame["split"]) == {"train", "test"}
    train = t.split("train")
    assert train.frame["patient_id"].nunique() == 8  # person1 and IM-0001 have two images each
    assert t.frame["source"].iat[0] == "chest_xray"


def test_folder_without_split_level_named_after_parent(kaggle_tree):
    t = load_dataset(kaggle_tree / "train")
    assert len(t) == 10 and t.frame["split"].isna().all()
    assert t.frame["source"].iat[0] == "chest_xray"  # 'train' is a split, so the parent names the source


def test_folder_three_classes_is_multiclass(tmp_path):
    for i, c in enumerate(["covid", "normal", "pneumonia"]):
        write_png(tmp_path / c / f"{i}.png", seed=i)
    t = load_dataset(tmp_path)
    assert t.task is TaskType.MULTICLASS and t.classes == ("covid", "normal", "pneumonia")
    assert t.frame["patient_id"].isna().all()
    assert any("no patient IDs" in n for n in t.notes)


def test_flat_folder_is_unlabelled(tmp_path):
    write_png(tmp_path / "a.png")
    write_png(tmp_path / "b.png", seed=1)
    t = load_dataset(tmp_path)
    assert len(t) == 2 and t.labels.shape == (2, 0)


def test_dicom_folder_reads_patient_date_view_from_tags(tmp_path):
    px = (gradient().astype(np.uint16) * 100).astype(np.uint16)
    write_dicom(tmp_path / "NORMAL" / "a.dcm", px, patient_id="PX1", study_date="20200102", view="AP")
    write_dicom(tmp_path / "PNEUMONIA" / "b.dcm", px, patient_id="PX2", study_date="20200103", view="PA")
    t = load_dataset(tmp_path)
    row = t.frame.set_index("patient_id").loc["PX1"]
    assert row["study_date"] == "2020-01-02" and row["view"] == "AP"
    assert load_image(t.frame["path"].iat[0]).shape == (40, 32)


def _nih(tmp_path):
    tmp_path.mkdir(parents=True, exist_ok=True)
    rows = [
        ("00000001_000.png", "Cardiomegaly", 0, 1),
        ("00000001_001.png", "Cardiomegaly|Emphysema", 1, 1),
        ("00000002_000.png", "No Finding", 0, 2),
        ("00000003_000.png", "Effusion|Infiltration|Mass", 0, 3),
        ("00000004_000.png", "Hernia", 0, 4),
    ]
    for i, r in enumerate(rows[:-1]):  # the last image is missing on disk
        write_png(tmp_path / "images" / r[0], seed=i)
    df = pd.DataFrame(rows, columns=["Image Index", "Finding Labels", "Follow-up #", "Patient ID"])
    df["View Position"] = "PA"
    df.to_csv(tmp_path / "Data_Entry_2017.csv", index=False)
    return tmp_path


def test_nih_csv(tmp_path):
    t = load_dataset(_nih(tmp_path))
    assert t.task is TaskType.MULTILABEL and len(t.classes) == 14
    assert len(t) == 4
    assert any("1 rows left out" in n for n in t.notes)
    by_name = dict(zip(t.frame["path"].str.rsplit("/", n=1).str[-1], t.labels, strict=True))
    assert by_name["00000002_000.png"].sum() == 0  # No Finding -> all zeros
    lab = by_name["00000001_001.png"]
    assert lab[t.label_space.index("Cardiomegaly")] == 1 and lab[t.label_space.index("Emphysema")] == 1
    assert lab.sum() == 2
    assert t.frame["patient_id"].tolist() == ["1", "1", "2", "3"]
    assert t.frame["view"].eq("PA").all() and t.frame["follow_up"].tolist() == [0, 1, 0, 0]


def test_nih_csv_file_path_and_no_images(tmp_path):
    pd.DataFrame({"Image Index": ["x.png"], "Finding Labels": ["Mass"], "Patient ID": [1]}).to_csv(
        tmp_path / "labels.csv", index=False
    )
    with pytest.raises(DataFormatError, match="none of its 1 images were found"):
        load_dataset(tmp_path / "labels.csv")


def _covid(tmp_path):
    tmp_path.mkdir(parents=True, exist_ok=True)
    rows = [
        # patientid, offset, finding, view, modality, date, filename, license
        ("1", "0", "COVID-19", "PA", "X-ray", "January 22, 2020", "a.png", "CC BY"),
        ("1", "4", "COVID-19", "AP Supine", "X-ray", "January 26, 2020", "b.png", "CC BY"),
        ("2", "", "Pneumonia", "PA", "X-ray", "", "c.png", "CC BY-NC-SA"),
        ("3", "", "No Finding", "AP", "X-ray", "2020", "d.png", ""),
        ("4", "", "todo", "PA", "X-ray", "", "e.png", ""),
        ("5", "", "COVID-19", "L", "X-ray", "", "f.png", ""),
        ("6", "", "COVID-19", "Axial", "CT", "", "g.png", ""),
        ("7", "", "ARDS", "PA", "X-ray", "", "h.png", ""),
        ("8", "", "Streptococcus", "PA", "X-ray", "", "i.png", ""),
    ]
    cols = ["patientid", "offset", "finding", "view", "modality", "date", "filename", "license"]
    df = pd.DataFrame(rows, columns=cols)
    df["folder"] = "images"
    df["location"] = ["Hannover Medical School, Hannover, Germany", " Hannover Medical School, Hannover, Germany"] + [
        ""
    ] * 7
    df.to_csv(tmp_path / "metadata.csv", index=False)
    for i, r in enumerate(rows):
        write_png(tmp_path / "images" / r[6], seed=i)
    return tmp_path


def test_covid_metadata(tmp_path):
    t = load_dataset(_covid(tmp_path))
    assert detect_format(tmp_path) == "covid"
    assert t.task is TaskType.MULTICLASS and t.classes == ("NORMAL", "PNEUMONIA", "COVID-19")
    assert t.class_counts() == {"NORMAL": 1, "PNEUMONIA": 2, "COVID-19": 2}
    notes = " | ".join(t.notes)
    assert "1 rows left out: not X-ray" in notes
    assert "1 rows left out: finding 'todo'" in notes
    assert "1 rows left out: view not in" in notes
    assert "1 rows left out: finding not mapped" in notes  # ARDS
    p1 = t.frame[t.frame["patient_id"] == "1"]
    assert p1["offset"].tolist() == [0.0, 4.0]
    assert p1["study_date"].tolist() == ["2020-01-22", "2020-01-26"]
    assert t.frame.loc[t.frame["patient_id"] == "3", "study_date"].isna().all()  # year-only date "2020"
    assert t.frame["license"].notna().any()
    # the site (metadata `location`, stripped) where given, NA elsewhere: `cxr evaluate --by site`
    assert p1["site"].tolist() == ["Hannover Medical School, Hannover, Germany"] * 2
    assert t.frame.loc[t.frame["patient_id"] != "1", "site"].isna().all()


def test_covid_view_filter_option(tmp_path):
    t = load_dataset(_covid(tmp_path), views=("PA",))
    assert set(t.frame["view"]) == {"PA"}


def test_medmnist_npz_with_missing_test(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(
        tmp_path / "pneumoniamnist.npz",
        train_images=rng.integers(0, 255, (6, 28, 28), dtype=np.uint8),
        train_labels=np.array([[0], [1], [1], [0], [1], [1]], dtype=np.uint8),
        val_images=rng.integers(0, 255, (2, 28, 28), dtype=np.uint8),
        val_labels=np.array([[0], [1]], dtype=np.uint8),
    )
    t = load_dataset(tmp_path / "pneumoniamnist.npz")
    assert t.classes == ("NORMAL", "PNEUMONIA") and len(t) == 8
    assert t.frame["split"].value_counts().to_dict() == {"train": 6, "val": 2}
    assert t.class_counts() == {"NORMAL": 3, "PNEUMONIA": 5}
    img = load_image(t.frame["path"].iat[1])
    assert img.shape == (28, 28) and img.dtype == np.float32


def test_medmnist_missing_labels_array(tmp_path):
    np.savez(tmp_path / "x.npz", train_images=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(DataFormatError, match="train_images has no train_labels"):
        load_dataset(tmp_path / "x.npz", format="medmnist")


def test_generic_csv_binary_columns_multilabel(tmp_path):
    for i in range(4):
        write_png(tmp_path / "img" / f"{i}.png", seed=i)
    pd.DataFrame(
        {
            "path": [f"img/{i}.png" for i in range(4)],
            "patient_id": ["a", "a", "b", "c"],
            "Effusion": [1, 0, 1, None],
            "Mass": [1, 0, 0, 1],
        }
    ).to_csv(tmp_path / "my.csv", index=False)
    t = load_dataset(tmp_path / "my.csv")
    assert t.task is TaskType.MULTILABEL and t.classes == ("Effusion", "Mass")
    assert np.isnan(t.labels[3, 0]) and t.labels[0].tolist() == [1, 1]
    assert t.frame["path"].iat[0] == str((tmp_path / "img" / "0.png").resolve())


def test_generic_csv_pipe_labels_and_single_label(tmp_path):
    for i in range(3):
        write_png(tmp_path / f"{i}.png", seed=i)
    pd.DataFrame({"filename": ["0.png", "1.png", "2.png"], "labels": ["A|B", "B", "No Finding"]}).to_csv(
        tmp_path / "pipes.csv", index=False
    )
    t = load_dataset(tmp_path / "pipes.csv")
    assert t.task is TaskType.MULTILABEL and t.classes == ("A", "B")
    assert t.labels.tolist() == [[1, 1], [0, 1], [0, 0]]
    pd.DataFrame({"filename": ["0.png", "1.png", "2.png"], "label": ["cat", "dog", "emu"]}).to_csv(
        tmp_path / "single.csv", index=False
    )
    t2 = load_dataset(tmp_path / "single.csv")
    assert t2.task is TaskType.MULTICLASS and t2.class_index().tolist() == [0, 1, 2]


def test_manifest_round_trip(kaggle_tree, tmp_path):
    t = load_dataset(kaggle_tree)
    out = write_manifest(t, tmp_path / "m.csv")
    back = load_dataset(out)
    assert back.label_space == t.label_space
    np.testing.assert_array_equal(back.labels, t.labels)
    assert back.frame["path"].tolist() == t.frame["path"].tolist()
    assert back.frame["patient_id"].tolist() == t.frame["patient_id"].tolist()
    assert back.frame["split"].tolist() == t.frame["split"].tolist()


def test_manifest_keeps_unknown_labels(tmp_path):
    _nih(tmp_path)
    t = load_dataset(tmp_path)
    t.labels[0, 0] = np.nan
    back = load_dataset(write_manifest(t, tmp_path / "m.csv"))
    assert np.isnan(back.labels[0, 0]) and back.task is TaskType.MULTILABEL


def test_combine_kaggle_and_covid_three_classes(kaggle_tree, tmp_path):
    covid = _covid(tmp_path / "covid")
    t = load_datasets([str(kaggle_tree / "train"), f"{covid}::COVID-19"])
    assert t.task is TaskType.MULTICLASS
    assert t.classes == ("NORMAL", "PNEUMONIA", "COVID-19")
    assert t.class_counts() == {"NORMAL": 4, "PNEUMONIA": 6, "COVID-19": 2}
    assert t.frame["source"].value_counts().to_dict() == {"chest_xray": 10, "covid-chestxray": 2}
    assert (np.nansum(t.labels, axis=1) == 1).all()


def test_combine_multilabel_marks_unannotated_classes_unknown(tmp_path):
    a = load_dataset(_nih(tmp_path / "nih"))
    for i in range(2):
        write_png(tmp_path / "own" / f"{i}.png", seed=i)
    pd.DataFrame({"path": ["0.png", "1.png"], "Covid": [1, 0], "Mass": [0, 1]}).to_csv(
        tmp_path / "own" / "x.csv", index=False
    )
    b = load_dataset(tmp_path / "own" / "x.csv")
    t = combine([a, b])
    assert t.task is TaskType.MULTILABEL and "Covid" in t.classes and len(t.classes) == 15
    covid_col = t.label_space.index("covid")
    assert np.isnan(t.labels[: len(a), covid_col]).all()
    assert np.isnan(t.labels[len(a) :, t.label_space.index("Hernia")]).all()


def test_unknown_layout_lists_supported_layouts(tmp_path):
    (tmp_path / "readme.txt").write_text("nothing here")
    with pytest.raises(DataFormatError) as e:
        load_dataset(tmp_path)
    msg = str(e.value)
    for fmt in ("folder", "nih", "covid", "medmnist", "csv"):
        assert f"--format {fmt}" in msg


def test_format_override_mismatch_and_unknown(kaggle_tree):
    with pytest.raises(DataFormatError, match="does not look like --format covid"):
        load_dataset(kaggle_tree, format="covid")
    with pytest.raises(UnknownNameError, match="Did you mean 'covid'"):
        load_dataset(kaggle_tree, format="covd")


def test_missing_path(tmp_path):
    with pytest.raises(DataFormatError, match="no such file or folder"):
        load_dataset(tmp_path / "nothing")
