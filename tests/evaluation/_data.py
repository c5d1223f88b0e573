"""Synthetic prediction sets shared by the evaluation tests."""

from __future__ import annotations

import numpy as np


def noisy_binary(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Separable-ish scores: AUROC around 0.8."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.4).astype(float)
    p = 1 / (1 + np.exp(-(rng.normal(size=n) + 1.2 * (2 * y - 1))))
    return y, p


def multilabel_data(n: int = 120, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """N x 3 labels with NaNs in column 0 and an all-negative column 2; probabilities that track the labels."""
    rng = np.random.default_rng(seed)
    y = (rng.random((n, 3)) < 0.35).astype(np.float32)
    y[:, 2] = 0.0
    y[rng.random(n) < 0.2, 0] = np.nan
    p = np.clip(0.5 * np.nan_to_num(y, nan=0.5) + 0.5 * rng.random((n, 3)), 0, 1)
    return y, p


def multiclass_data(n: int = 90, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One-hot labels (N x 3) and softmax probabilities that favour the true class."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, 3, n)
    logits = rng.normal(size=(n, 3)) + 1.5 * np.eye(3)[idx]
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return np.eye(3, dtype=np.float32)[idx], p
