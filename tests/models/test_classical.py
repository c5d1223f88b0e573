"""Classical baselines: fit a separable toy set, and save/load without pickle to identical output."""

from __future__ import annotations

import numpy as np
import pytest

from cxrkit.core.errors import ConfigError
from cxrkit.models import ClassicalBaseline


def _toy(label_space, n=60, seed=0):
    """Embeddings where class c shifts dimension c; labels as the N x C matrix (NaN = unknown)."""
    rng = np.random.default_rng(seed)
    C = len(label_space.classes)
    if label_space.task.value == "multilabel":
        Y = rng.integers(0, 2, size=(n, C)).astype(np.float32)
        # no pure-noise columns: standardising would blow them up to the signal's scale for KNN
        X = rng.normal(size=(n, C)) * 0.3 + 3 * Y
        Y[0, 1] = np.nan  # unknown label, must be ignored
    else:
        y = np.arange(n) % C
        Y = np.eye(C, dtype=np.float32)[y]
        X = rng.normal(size=(n, 8)) * 0.3
        X[np.arange(n), y] += 3
    return X.astype(np.float32), Y


def _truth(label_space, Y):
    if label_space.task.value == "binary":
        return Y[:, 1:2]
    return Y


@pytest.mark.parametrize("method", ["logreg", "knn"])
@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel"])
def test_fit_separable_and_round_trip(tmp_path, label_spaces, method, task):
    ls = label_spaces[task]
    # 160 rows: every one of the 16 multilabel combinations has enough neighbours for k=3
    X, Y = _toy(ls, n=160)
    Xt, Yt = _toy(ls, n=30, seed=1)
    base = ClassicalBaseline(method=method, features="embeddings", k=3).fit(X, Y, ls)
    p = base.predict_proba(Xt)
    assert p.shape == (30, ls.num_outputs)
    assert ((p >= 0) & (p <= 1)).all()
    truth = _truth(ls, Yt)
    if task == "multiclass":
        np.testing.assert_allclose(p.sum(1), 1.0)
        assert (p.argmax(1) == truth.argmax(1)).mean() == 1.0
    else:
        known = np.isfinite(truth)
        assert ((p > 0.5) == (truth == 1))[known].mean() == 1.0

    base.save(tmp_path / "b")
    assert sorted(f.name for f in (tmp_path / "b").iterdir()) == ["arrays.safetensors", "baseline.json"]
    loaded = ClassicalBaseline.load(tmp_path / "b")
    np.testing.assert_array_equal(loaded.predict_proba(Xt), p)
    assert loaded.label_space == ls


@pytest.mark.parametrize("method", ["logreg", "knn"])
def test_pixels_features(tmp_path, label_spaces, method):
    ls = label_spaces["binary"]
    rng = np.random.default_rng(0)
    n = 40
    y = np.arange(n) % 2
    imgs = rng.uniform(0, 0.2, size=(n, 64, 64)).astype(np.float32)
    imgs[y == 1, 16:48, 16:48] += 0.7  # a bright square on positives
    Y = np.eye(2, dtype=np.float32)[y]
    base = ClassicalBaseline(method=method, features="pixels", pixel_size=16).fit(imgs, Y, ls)
    assert base.arrays["mean"].shape == (256,)
    p = base.predict_proba(imgs)
    assert ((p[:, 0] > 0.5) == (y == 1)).all()
    base.save(tmp_path / "p")
    np.testing.assert_array_equal(ClassicalBaseline.load(tmp_path / "p").predict_proba(imgs), p)


def test_bad_inputs(label_spaces):
    ls = label_spaces["multiclass"]
    X, Y = _toy(ls)
    with pytest.raises(ConfigError, match="Every class"):
        ClassicalBaseline().fit(X[Y[:, 2] == 0], Y[Y[:, 2] == 0], ls)
    with pytest.raises(ConfigError, match="not fitted"):
        ClassicalBaseline().predict_proba(X)
    base = ClassicalBaseline().fit(X, Y, ls)
    with pytest.raises(ConfigError, match=f"{X.shape[1]} features"):
        base.predict_proba(X[:, :2])
