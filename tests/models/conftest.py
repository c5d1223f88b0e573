"""Shared fixtures for cxrkit.models tests: label spaces and tiny inputs."""

from __future__ import annotations

import pytest

from cxrkit.core.task import LabelSpace, TaskType

LABEL_SPACES = {
    "binary": LabelSpace(TaskType.BINARY, ("normal", "pneumonia")),
    "multiclass": LabelSpace(TaskType.MULTICLASS, ("normal", "covid", "pneumonia")),
    "multilabel": LabelSpace(TaskType.MULTILABEL, ("effusion", "nodule", "mass", "edema")),
}


@pytest.fixture
def label_spaces() -> dict[str, LabelSpace]:
    return LABEL_SPACES


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch) -> None:
    # never read or write the user's real ~/.cxrkit
    monkeypatch.setenv("CXRKIT_HOME", str(tmp_path / "cxrkit_home"))
