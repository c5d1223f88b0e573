"""One vocabulary across sources: NaN where a source does not label, the implications, provenance columns."""

from __future__ import annotations

import numpy as np
import pytest

from cxrkit.core.task import TaskType
from cxrkit.data import VOCABULARY, harmonise, load_dataset, load_datasets
from cxrkit.data.harmonise import drop_unlabelled_findings
from cxrkit.training.data_prep import prepare_table
from cxrkit.training.recipe import DataSpec
from tests.data.conftest import make_pneumoniamnist


def _col(t, name):
    return t.labels[:, t.label_space.index(name)]


def _rows(t, text):
    return t.frame["path"].str.contains(text, regex=False).to_numpy()


def test_kaggle_labels_pneumonia_and_no_finding_only(kaggle_tree):
    t = harmonise(load_dataset(kaggle_tree))
    assert t.task is TaskType.MULTILABEL and t.classes == VOCABULARY
    pneu = _rows(t, "PNEUMONIA")
    assert (_col(t, "Pneumonia")[pneu] == 1).all() and (_col(t, "No Finding")[pneu] == 0).all()
    assert np.isnan(_col(t, "Effusion")[pneu]).all()  # the source did not say
    assert (_col(t, "COVID-19") == 0).all()  # Kermany's images predate the pandemic
    normal = ~pneu
    assert (_col(t, "No Finding")[normal] == 1).all()
    assert (t.labels[normal][:, [t.label_space.index(c) for c in VOCABULARY if c != "No Finding"]] == 0).all()
    assert t.frame["age_group"].eq("child").all() and t.frame["dataset"].eq("chest_xray").all()


def test_radiography_db(radiography_db):
    t = harmonise(load_dataset(radiography_db))
    covid, opacity = _rows(t, "images/COVID-"), _rows(t, "Lung_Opacity-")
    assert (_col(t, "COVID-19")[covid] == 1).all() and (_col(t, "Pneumonia")[covid] == 1).all()
    assert (_col(t, "Lung Opacity")[opacity] == 1).all() and (_col(t, "COVID-19")[opacity] == 0).all()
    assert np.isnan(_col(t, "Pneumonia")[opacity]).all()  # RSNA's opacity is not a confirmed pneumonia
    assert np.isnan(_col(t, "Lung Opacity")[covid]).all()  # folders split by origin: unknown, not absent
    viral = _rows(t, "Viral Pneumonia-")
    assert (_col(t, "COVID-19")[viral] == 0).all() and np.isnan(_col(t, "Lung Opacity")[viral]).all()
    assert np.isnan(_col(t, "Atelectasis")[covid]).all()
    off = harmonise(load_dataset(radiography_db), covid_is_pneumonia=False)
    assert np.isnan(_col(off, "Pneumonia")[covid]).all()


def test_nih_no_finding_and_demographics(nih_demo):
    t = harmonise(load_dataset(nih_demo))
    nf = _col(t, "No Finding")
    assert nf.tolist() == [0, 0, 1, 0, 1]
    assert (_col(t, "COVID-19") == 0).all()
    assert np.isnan(_col(t, "Lung Opacity")[0]) and _col(t, "Lung Opacity")[2] == 0
    assert t.frame["sex"].tolist() == ["M", "M", "F", "F", "M"] and t.frame["view"].iat[1] == "AP"
    assert harmonise(t) is t  # idempotent


def test_combined_sources_share_one_vocabulary(kaggle_tree, nih_demo, radiography_db, tmp_path):
    npz = make_pneumoniamnist(tmp_path / "pneumoniamnist_64.npz")
    t = load_datasets([str(kaggle_tree), str(nih_demo), str(radiography_db), str(npz)], harmonise=True)
    assert t.classes == VOCABULARY and len(t) == 20 + 5 + 11 + 4
    # PneumoniaMNIST is Kermany's set: one source with the Kaggle folder for leave-source-out.
    assert set(t.frame.loc[t.frame["dataset"] == "medmnist:pneumoniamnist", "source"]) == {"kaggle-pneumonia"}
    nih = (t.frame["dataset"] == "nih-chestxray14").to_numpy()
    assert not np.isnan(t.labels[nih][:, t.label_space.index("Hernia")]).any()
    abnormal = _col(t, "No Finding") == 0
    assert np.isnan(t.labels[~nih & abnormal][:, t.label_space.index("Hernia")]).all()
    assert (t.labels[~nih & ~abnormal][:, t.label_space.index("Hernia")] == 0).all()


def test_unknown_class_becomes_an_extra_finding(tmp_path):
    from tests.conftest import write_png

    write_png(tmp_path / "Tuberculosis" / "a.png")
    write_png(tmp_path / "Normal" / "b.png", seed=1)
    t = harmonise(load_dataset(tmp_path))
    assert t.classes[-1] == "Tuberculosis" and _col(t, "Tuberculosis").tolist() == [0, 1]
    assert _col(t, "No Finding").tolist() == [1, 0]


def test_recipe_harmonise_drops_findings_without_positives(kaggle_tree, nih_demo):
    spec = DataSpec(sources=[str(kaggle_tree), str(nih_demo)], harmonise=True, val=0.3)
    t = prepare_table(spec)
    assert t.task is TaskType.MULTILABEL
    assert set(t.classes) == {"Pneumonia", "Effusion", "Mass", "No Finding"}
    assert drop_unlabelled_findings(t) is t


@pytest.mark.parametrize("covid_is_pneumonia", [True, False])
def test_covid_collection(tmp_path, covid_is_pneumonia):
    import pandas as pd

    from tests.conftest import write_png

    rows = [("1", "COVID-19", "a.png"), ("2", "Pneumonia", "b.png"), ("3", "No Finding", "c.png")]
    df = pd.DataFrame(rows, columns=["patientid", "finding", "filename"])
    df["modality"], df["view"], df["folder"] = "X-ray", "PA", "images"
    df.to_csv(tmp_path / "metadata.csv", index=False)
    for i, r in enumerate(rows):
        write_png(tmp_path / "images" / r[2], seed=i)
    t = harmonise(load_dataset(tmp_path), covid_is_pneumonia=covid_is_pneumonia)
    assert _col(t, "COVID-19").tolist() == [1, 0, 0]
    expected = [1, 1, 0] if covid_is_pneumonia else [np.nan, 1, 0]
    np.testing.assert_array_equal(_col(t, "Pneumonia"), np.array(expected, np.float32))
