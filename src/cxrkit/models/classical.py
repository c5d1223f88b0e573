"""Classical baselines: k-nearest neighbours and logistic regression on pixels or CNN embeddings.

They follow the deep models' conventions: ``fit(X, labels, label_space)`` with the N x C label matrix
(1 / 0 / NaN) and ``predict_proba(X)`` -> N x num_outputs (binary: N x 1, the positive class).

Saved without pickle: the fitted numbers (scaler mean/scale, logistic coefficients and intercepts, or
the KNN training matrix, its targets and k) go to ``arrays.safetensors`` and the settings to
``baseline.json``; ``load`` rebuilds the same predictor. Prediction is one numpy code path from those
arrays, so a loaded baseline gives bit-identical probabilities.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from cxrkit.core.errors import ConfigError, UnknownNameError
from cxrkit.core.files import atomic_dir
from cxrkit.core.task import LabelSpace, TaskType, label_targets

log = logging.getLogger(__name__)

METHODS = ("logreg", "knn")
FEATURES = ("pixels", "embeddings")
ARRAYS_FILE = "arrays.safetensors"
CONFIG_FILE = "baseline.json"


def downsample_pixels(images: np.ndarray, size: int = 32) -> np.ndarray:
    """Images (N, H, W) or (N, C, H, W) in [0, 1] -> (N, C*size*size) float32 by area averaging."""
    import torch
    import torch.nn.functional as F

    arr = np.asarray(images, dtype=np.float32)
    if arr.ndim == 3:
        arr = arr[:, None]
    if arr.ndim != 4:
        raise ConfigError(f"Pixel features need images shaped (N, H, W) or (N, C, H, W), got {arr.shape}.")
    with torch.no_grad():
        small = F.interpolate(torch.from_numpy(arr), size=(size, size), mode="area")
    return small.flatten(1).numpy()


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free logistic


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class ClassicalBaseline:
    """KNN or logistic regression on standardised pixels or embeddings.

    Args:
        method: 'logreg' or 'knn'.
        features: 'pixels' (``X`` are images, downsampled to ``pixel_size`` and flattened) or
            'embeddings' (``X`` is an N x D feature array, e.g. from ``cxrkit.models.embed``).
        pixel_size: side of the downsampled image for pixel features.
        k: neighbours for KNN (uniform vote; unknown labels are ignored per class).
        C: inverse L2 regularisation strength for logistic regression.
        max_iter: solver iterations for logistic regression.
    """

    def __init__(
        self,
        method: str = "logreg",
        features: str = "embeddings",
        pixel_size: int = 32,
        k: int = 5,
        C: float = 1.0,
        max_iter: int = 1000,
    ) -> None:
        if method not in METHODS:
            raise UnknownNameError("baseline method", method, METHODS)
        if features not in FEATURES:
            raise UnknownNameError("baseline features", features, FEATURES)
        if k < 1:
            raise ConfigError(f"k must be >= 1, got {k}.")
        self.method = method
        self.features = features
        self.pixel_size = int(pixel_size)
        self.k = int(k)
        self.C = float(C)
        self.max_iter = int(max_iter)
        self.label_space: LabelSpace | None = None
        self.arrays: dict[str, np.ndarray] = {}

    # -- features ------------------------------------------------------------------------------
    def _design(self, X: np.ndarray) -> np.ndarray:
        if self.features == "pixels":
            feats = downsample_pixels(X, self.pixel_size)
        else:
            feats = np.asarray(X, dtype=np.float32)
            if feats.ndim != 2:
                raise ConfigError(
                    f"Embedding features must be N x D, got shape {feats.shape}; use features='pixels' for images."
                )
        return feats.astype(np.float64)

    def _scaled(self, X: np.ndarray) -> np.ndarray:
        feats = self._design(X)
        mean, scale = self.arrays["mean"], self.arrays["scale"]
        if feats.shape[1] != mean.shape[0]:
            raise ConfigError(f"Expected {mean.shape[0]} features per sample (as fitted), got {feats.shape[1]}.")
        return (feats - mean) / scale

    # -- fitting -------------------------------------------------------------------------------
    def fit(self, X: np.ndarray, labels: np.ndarray, label_space: LabelSpace) -> ClassicalBaseline:
        """Fit on images or features ``X`` and the N x C label matrix (NaN = unknown, ignored)."""
        feats = self._design(X)
        targets = label_targets(np.asarray(labels, dtype=np.float32), label_space)
        if len(feats) != len(targets):
            raise ConfigError(f"X has {len(feats)} rows but labels have {len(targets)}.")
        self.label_space = label_space
        mean = feats.mean(axis=0)
        scale = feats.std(axis=0)
        scale[scale < 1e-12] = 1.0  # constant features stay at zero
        self.arrays = {"mean": mean, "scale": scale}
        Xs = (feats - mean) / scale
        if self.method == "logreg":
            self._fit_logreg(Xs, targets, label_space)
        else:
            self._fit_knn(Xs, targets, label_space)
        return self

    def _fit_logreg(self, Xs: np.ndarray, targets: np.ndarray, ls: LabelSpace) -> None:
        from sklearn.linear_model import LogisticRegression

        def one(x: np.ndarray, y: np.ndarray) -> LogisticRegression:
            return LogisticRegression(C=self.C, max_iter=self.max_iter).fit(x, y)

        d = Xs.shape[1]
        if ls.task is TaskType.MULTICLASS:
            keep = targets >= 0
            y = targets[keep]
            present = np.unique(y)
            if len(present) != len(ls.classes):
                missing = [ls.classes[i] for i in range(len(ls.classes)) if i not in present]
                raise ConfigError(f"Every class needs training examples; none for {missing}.")
            clf = one(Xs[keep], y)
            coef, intercept = clf.coef_, clf.intercept_
            if coef.shape[0] == 1:  # sklearn's 2-class form: softmax([0, z]) == [1 - sigmoid(z), sigmoid(z)]
                coef = np.vstack([np.zeros(d), coef[0]])
                intercept = np.array([0.0, intercept[0]])
        else:
            coef = np.zeros((targets.shape[1], d))
            intercept = np.zeros(targets.shape[1])
            names = [ls.positive] if ls.task is TaskType.BINARY else list(ls.classes)
            for j, name in enumerate(names):
                keep = np.isfinite(targets[:, j])
                y = targets[keep, j].astype(int)
                if len(np.unique(y)) < 2:
                    if ls.task is TaskType.BINARY or not keep.any():
                        raise ConfigError(f"Class {name!r} needs both positive and negative known examples to fit.")
                    prior = np.clip(y.mean(), 1e-6, 1 - 1e-6)
                    intercept[j] = np.log(prior / (1 - prior))
                    log.warning("Class %r has only one label value in training; predicting its prior.", name)
                    continue
                clf = one(Xs[keep], y)
                coef[j], intercept[j] = clf.coef_[0], clf.intercept_[0]
        self.arrays.update(coef=np.asarray(coef, dtype=np.float64), intercept=np.asarray(intercept, dtype=np.float64))

    def _fit_knn(self, Xs: np.ndarray, targets: np.ndarray, ls: LabelSpace) -> None:
        if ls.task is TaskType.MULTICLASS:
            keep = targets >= 0
            onehot = np.zeros((len(targets), len(ls.classes)))
            onehot[np.arange(len(targets))[keep], targets[keep]] = 1.0
            T = onehot[keep]
        else:
            T = targets.astype(np.float64)
            keep = np.isfinite(T).any(axis=1)
            T = T[keep]
        if not keep.any():
            raise ConfigError("No labelled training rows for KNN.")
        prior = np.nanmean(T, axis=0)
        self.arrays.update(train=Xs[keep], targets=T, prior=np.nan_to_num(prior, nan=0.5))

    # -- prediction ----------------------------------------------------------------------------
    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Probabilities N x num_outputs (binary: N x 1, the positive class)."""
        if self.label_space is None:
            raise ConfigError("This baseline is not fitted; call fit() or ClassicalBaseline.load().")
        Xs = self._scaled(X)
        if self.method == "logreg":
            z = Xs @ self.arrays["coef"].T + self.arrays["intercept"]
            return _softmax(z) if self.label_space.task is TaskType.MULTICLASS else _sigmoid(z)
        return self._knn_proba(Xs)

    def _knn_proba(self, Xs: np.ndarray, chunk: int = 1024) -> np.ndarray:
        train, T, prior = self.arrays["train"], self.arrays["targets"], self.arrays["prior"]
        k = min(self.k, len(train))
        tn = (train**2).sum(axis=1)
        out = np.empty((len(Xs), T.shape[1]))
        for s in range(0, len(Xs), chunk):
            q = Xs[s : s + chunk]
            dist = (q**2).sum(axis=1)[:, None] - 2.0 * q @ train.T + tn[None, :]
            idx = np.argsort(dist, axis=1, kind="stable")[:, :k]  # ties: the earlier training row wins
            neigh = T[idx]  # (n, k, C)
            known = np.isfinite(neigh)
            counts = known.sum(axis=1)
            sums = np.where(known, neigh, 0.0).sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                out[s : s + chunk] = np.where(counts > 0, sums / np.maximum(counts, 1), prior[None, :])
        return out

    # -- persistence ---------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        return {
            "format_version": 1,
            "method": self.method,
            "features": self.features,
            "pixel_size": self.pixel_size,
            "k": self.k,
            "C": self.C,
            "max_iter": self.max_iter,
            "label_space": self.label_space.to_dict() if self.label_space else None,
        }

    def save(self, path: str | Path) -> Path:
        """Write ``arrays.safetensors`` + ``baseline.json`` into folder ``path`` (atomically)."""
        from safetensors.numpy import save_file

        if self.label_space is None:
            raise ConfigError("Fit the baseline before saving it.")
        path = Path(path)
        with atomic_dir(path) as tmp:
            save_file({k: np.ascontiguousarray(v) for k, v in self.arrays.items()}, str(tmp / ARRAYS_FILE))
            (tmp / CONFIG_FILE).write_text(json.dumps(self.config(), indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> ClassicalBaseline:
        """Rebuild a saved baseline (no pickle involved)."""
        from safetensors.numpy import load_file

        from cxrkit.core.errors import BundleError

        path = Path(path)
        try:
            cfg = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
            arrays = load_file(str(path / ARRAYS_FILE))
        except FileNotFoundError as err:
            raise BundleError(
                f"Baseline folder {path} is incomplete: {err.filename} is missing. Fix: save it again."
            ) from err
        except (json.JSONDecodeError, ValueError, OSError) as err:
            raise BundleError(f"Baseline folder {path} is corrupt ({err}). Fix: save it again.") from err
        obj = cls(
            method=cfg["method"],
            features=cfg["features"],
            pixel_size=cfg["pixel_size"],
            k=cfg["k"],
            C=cfg["C"],
            max_iter=cfg["max_iter"],
        )
        obj.label_space = LabelSpace.from_dict(cfg["label_space"])
        obj.arrays = dict(arrays)
        return obj
