"""Sanity checks for saliency maps (Adebayo et al. 2018, "Sanity Checks for Saliency Maps").

A map that barely changes when the model's weights are replaced by random ones explains the input's
edges, not the model. ``randomization_check`` measures that: the Spearman rank correlation between the
maps of the trained model and of the same architecture with freshly initialised weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr

from cxrkit.explain.cam import compute_cams_for_model
from cxrkit.models.bundle import Bundle
from cxrkit.models.registry import create_model


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps of the same shape (0 when either is constant)."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"maps differ in size: {a.shape} vs {b.shape}")
    if a.std() == 0 or b.std() == 0:
        return 0.0
    return float(spearmanr(a, b).statistic)


def randomized_model(bundle: Bundle, seed: int = 0) -> torch.nn.Module:
    """The bundle's architecture with randomly initialised weights (the global RNG is left untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = create_model(
            bundle.architecture,
            bundle.label_space,
            in_chans=bundle.preprocessing.in_chans,
            weights="none",
            **bundle.model_kwargs,
        )
    param = next(bundle.model.parameters(), None)
    return model.to(param.device if param is not None else "cpu").eval()


def randomization_check(
    bundle: Bundle,
    images: Sequence[np.ndarray],
    method: str = "gradcam",
    target: str | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Compare the trained model's maps with those of a randomly initialised copy.

    Both explain the same class (the trained model's prediction unless ``target`` is given).

    Returns:
        ``{"spearman": [per image], "mean_spearman", "trained_std": [per image], "random_std": [...]}``.
        A trustworthy method gives a low ``mean_spearman`` (Adebayo et al. found high values for
        several popular methods) and a non-zero ``trained_std`` (a uniform map explains nothing).
    """
    trained = compute_cams_for_model(
        bundle.model, bundle.label_space, bundle.preprocessing, images, method=method, target=target,
        thresholds=bundle.thresholds,
    )  # fmt: skip
    random = compute_cams_for_model(
        randomized_model(bundle, seed),
        bundle.label_space,
        bundle.preprocessing,
        images,
        method=method,
        target=[r.target for r in trained],
    )
    rho = [rank_correlation(a.cam, b.cam) for a, b in zip(trained, random, strict=True)]
    return {
        "spearman": rho,
        "mean_spearman": float(np.mean(rho)) if rho else float("nan"),
        "trained_std": [float(r.cam.std()) for r in trained],
        "random_std": [float(r.cam.std()) for r in random],
    }
