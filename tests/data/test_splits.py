from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cxrkit.core.errors import ConfigError, LeakageError
from cxrkit.core.task import LabelSpace, TaskType
from cxrkit.data import (
    CxrTable,
    assign_splits,
    check_no_leakage,
    class_weights,
    leaking_patients,
    patient_kfold,
    undersample,
)


def synthetic(n_patients: int = 300, seed: int = 0, with_patients: bool = True) -> CxrTable:
    """Patients with 1-4 images each, 25% positive patients."""
    rng = np.random.default_rng(seed)
    rows, labels = [], []
    for p in range(n_patients):
        positive = rng.random() < 0.25
        for k in range(int(rng.integers(1, 5))):
            rows.append({"path": f"/x/p{p}_{k}.png", "patient_id": f"p{p}" if with_patients else None})
            labels.append([0.0, 1.0] if positive else [1.0, 0.0])
    return CxrTable(pd.DataFrame(rows), np.array(labels), LabelSpace(TaskType.BINARY, ("NORMAL", "PNEUMONIA")))


def test_split_is_patient_grouped_and_near_target_shares():
    t = assign_splits(synthetic(), val=0.15, test=0.15, seed=1)
    assert leaking_patients(t) == []
    shares = t.frame["split"].value_counts(normalize=True)
    assert abs(shares["val"] - 0.15) < 0.03 and abs(shares["test"] - 0.15) < 0.03
    # Stratified: the positive share is similar in every split.
    pos = t.labels[:, 1]
    overall = pos.mean()
    for s in ("train", "val", "test"):
        assert abs(pos[(t.frame["split"] == s).to_numpy()].mean() - overall) < 0.05


def test_split_is_reproducible_and_seed_dependent():
    a = assign_splits(synthetic(), seed=3).frame["split"].tolist()
    b = assign_splits(synthetic(), seed=3).frame["split"].tolist()
    c = assign_splits(synthetic(), seed=4).frame["split"].tolist()
    assert a == b and a != c


def test_split_by_image_when_no_patients():
    t = assign_splits(synthetic(50, with_patients=False))
    assert set(t.frame["split"]) == {"train", "val", "test"}


def test_bad_fractions():
    with pytest.raises(ConfigError, match="sum below 1"):
        assign_splits(synthetic(10), val=0.6, test=0.5)


def test_leakage_check_names_patients():
    t = synthetic(20)
    t.frame["split"] = "train"
    first = t.frame["patient_id"] == "p0"
    if first.sum() < 2:
        t.frame.loc[t.frame.index[-1], "patient_id"] = "p0"
        first = t.frame["patient_id"] == "p0"
    t.frame.loc[first[first].index[0], "split"] = "val"
    with pytest.raises(LeakageError, match=r"1 patients have images in more than one split: p0") as e:
        check_no_leakage(t)
    assert e.value.patients == ["p0"]


def test_kfold_patients_disjoint_and_cover_all():
    t = synthetic(100)
    groups = t.group_ids()
    seen = []
    for train_idx, val_idx in patient_kfold(t, k=5):
        assert not set(groups[train_idx]) & set(groups[val_idx])
        seen.extend(val_idx.tolist())
    assert sorted(seen) == list(range(len(t)))


def test_undersample_caps_each_class():
    t = undersample(synthetic(), per_class=50)
    assert t.class_counts() == {"NORMAL": 50, "PNEUMONIA": 50}


def test_class_weights():
    t = synthetic()
    counts = t.class_counts()
    np.testing.assert_allclose(class_weights(t), [counts["NORMAL"] / counts["PNEUMONIA"]], rtol=1e-6)
    ml = CxrTable(
        pd.DataFrame({"path": list("abcd")}),
        np.array([[1, 0], [0, np.nan], [0, 1], [0, 1]], dtype=np.float32),
        LabelSpace(TaskType.MULTILABEL, ("A", "B")),
    )
    np.testing.assert_allclose(class_weights(ml), [3.0, 0.5])  # B: 1 negative, 2 positives, NaN ignored


def test_undersample_warns_when_a_class_has_fewer(caplog):
    """Issue 12, item 14: --per-class N returning fewer than N images of a class says so."""
    t = synthetic()
    counts = t.class_counts()
    with caplog.at_level("WARNING", logger="cxrkit.data.splits"):
        out = undersample(t, per_class=counts["PNEUMONIA"] + 10)
    assert out.class_counts()["PNEUMONIA"] == counts["PNEUMONIA"]
    (msg,) = [r.getMessage() for r in caplog.records]
    assert "PNEUMONIA" in msg and f"{counts['PNEUMONIA']} of the {counts['PNEUMONIA'] + 10}" in msg
    assert "NORMAL" not in msg and any("PNEUMONIA" in n for n in out.notes)
