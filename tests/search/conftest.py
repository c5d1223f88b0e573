"""A tiny trained bundle and a small learnable image folder, made once per session (seconds)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def search_folder(small_learnable) -> Path:
    """12 NORMAL + 12 PNEUMONIA images of 32 px; two images per patient (Kaggle-style names)."""
    return small_learnable


@pytest.fixture(scope="session")
def search_bundle(small_bundle) -> Path:
    """A tiny_cnn bundle trained on ``search_folder`` (shared with the serving tests)."""
    return small_bundle


@pytest.fixture(scope="session")
def other_bundle(search_bundle, tmp_path_factory) -> Path:
    """Same architecture, different weights (so a different fingerprint)."""
    from cxrkit.models import load_bundle, save_bundle

    b = load_bundle(search_bundle)
    with torch.no_grad():
        for p in b.model.parameters():
            p.add_(0.01)
    out = tmp_path_factory.mktemp("other") / "other_bundle"
    return save_bundle(
        out,
        b.model,
        b.architecture,
        b.label_space,
        b.preprocessing,
        b.thresholds,
        b.metrics,
        b.data_summary,
        b.license,
        model_kwargs=b.model_kwargs,
    )


@pytest.fixture(scope="session")
def built_index(search_bundle, search_folder, tmp_path_factory) -> Path:
    """An exact index over ``search_folder`` (read-only for tests: copy before changing it)."""
    from cxrkit.search import build_index

    out = tmp_path_factory.mktemp("idx") / "index"
    build_index(search_bundle, [str(search_folder)], out, chunk_size=8)
    return out
