"""Leave-source-out folds: every source held out once, never on both sides."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cxrkit.core.errors import DataFormatError
from cxrkit.core.task import LabelSpace, TaskType
from cxrkit.data import SourceFold, load_datasets, source_folds
from cxrkit.data.table import CxrTable


def _table(sources):
    frame = pd.DataFrame({"path": [f"/x/{i}.png" for i in range(len(sources))], "source": sources})
    labels = np.eye(2, dtype=np.float32)[np.arange(len(sources)) % 2]
    return CxrTable(frame, labels, LabelSpace(TaskType.BINARY, ("NORMAL", "PNEUMONIA")))


def test_one_fold_per_source_and_no_source_on_both_sides():
    t = _table(["b", "a", "b", "c", None, "a", "c", "c"])
    folds = source_folds(t)
    assert [f.held_out for f in folds] == ["a", "b", "c"]
    assert all(isinstance(f, SourceFold) for f in folds)
    src = t.frame["source"]
    for f in folds:
        assert set(src.iloc[f.val_index]) == {f.held_out}
        assert f.held_out not in set(src.iloc[f.train_index])
        assert not set(f.train_index) & set(f.val_index)
        assert 4 not in f.train_index and 4 not in f.val_index  # no source: in no fold
    assert sorted(np.concatenate([f.val_index for f in folds]).tolist()) == [0, 1, 2, 3, 5, 6, 7]
    with pytest.raises(AttributeError):
        folds[0].held_out = "z"  # frozen


def test_other_column_and_errors():
    t = _table(["a", "a", "b", "b"])
    t.frame["site"] = ["x", "y", "x", "y"]
    assert [f.val_index.tolist() for f in source_folds(t, column="site")] == [[0, 2], [1, 3]]
    with pytest.raises(DataFormatError, match="at least 2 sources"):
        source_folds(_table(["a", "a"]))
    with pytest.raises(DataFormatError, match="no 'hospital' column"):
        source_folds(t, column="hospital")


def test_harmonised_copies_share_a_fold(kaggle_tree, radiography_db, tmp_path):
    from tests.data.conftest import make_pneumoniamnist

    npz = make_pneumoniamnist(tmp_path / "pneumoniamnist.npz")
    kaggle = tmp_path / "kaggle-pneumonia"
    kaggle_tree.rename(kaggle)
    t = load_datasets([str(kaggle), str(npz), str(radiography_db)], harmonise=True)
    held = {f.held_out: f for f in source_folds(t)}
    assert len(held["kaggle-pneumonia"].val_index) == 20 + 4 + 1  # + the Radiography DB normal from Kermany
