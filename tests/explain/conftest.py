"""Fixtures for cxrkit.explain: a tiny trained blob model (once per session) and untrained bundles."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cxrkit.core.preprocess import Preprocessing
from cxrkit.core.task import LabelSpace, TaskType
from cxrkit.models import Bundle, create_model

LABEL_SPACES = {
    "binary": LabelSpace(TaskType.BINARY, ("NORMAL", "PNEUMONIA")),
    "multiclass": LabelSpace(TaskType.MULTICLASS, ("normal", "covid", "pneumonia")),
    "multilabel": LabelSpace(TaskType.MULTILABEL, ("effusion", "nodule", "mass", "edema")),
}


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CXRKIT_HOME", str(tmp_path / "cxrkit_home"))


def make_bundle(
    arch: str = "tiny_cnn",
    task: str = "multilabel",
    image_size: int = 32,
    resize: str = "squash",
    seed: int = 0,
) -> Bundle:
    """An untrained bundle built in memory (random weights)."""
    ls = LABEL_SPACES[task]
    torch.manual_seed(seed)
    kwargs = {"image_size": image_size} if arch.endswith("cnn") else {}
    model = create_model(arch, ls, weights="none", **kwargs).eval()
    return Bundle(
        path=Path(f"/nowhere/{arch}"),
        model=model,
        architecture=arch,
        model_kwargs=kwargs,
        label_space=ls,
        preprocessing=Preprocessing(image_size=image_size, resize=resize),
        thresholds={},
        metrics={},
        data_summary={},
        license="test",
        code_version="0",
        created="",
        fingerprint="0",
    )


@pytest.fixture(scope="session")
def blobs(learnable) -> Path:
    """NORMAL (dark centre) / PNEUMONIA (bright central blob) 40 px PNGs: the shared ``learnable`` folder."""
    return learnable


@pytest.fixture(scope="session")
def blob_bundle(trained) -> Path:
    """The shared tiny CNN trained on ``blobs`` (tests/conftest.py ``trained``); returns the bundle folder."""
    result, out = trained
    assert result["val_auroc"] > 0.9, result  # the sanity tests below need a model that learned the blob
    return out / "bundle"
