"""Leave-one-patient-out evaluation on a constructed index where same-patient neighbours matter."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cxrkit.core.task import LabelSpace, TaskType
from cxrkit.search import evaluate_index, load_index, new_faiss_index
from cxrkit.search.index_files import FORMAT_VERSION, write_index_folder

SPACE = LabelSpace(TaskType.BINARY, ("NORMAL", "PNEUMONIA"))


def make_index(path: Path, vectors: np.ndarray, patients: list[str | None], classes: list[int]) -> Path:
    index = new_faiss_index(vectors.shape[1], "exact")
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    frame = pd.DataFrame(
        {
            "path": [f"/img/{i}.png" for i in range(len(vectors))],
            "patient_id": pd.array(patients, dtype="string"),
            "source": "synthetic",
        }
    )
    labels = np.eye(2, dtype=np.float32)[classes]
    info = {
        "format_version": FORMAT_VERSION,
        "index_type": "exact",
        "hnsw": None,
        "dim": vectors.shape[1],
        "model": {"fingerprint": "f" * 64, "architecture": "none", "name": "synthetic"},
        "label_space": SPACE.to_dict(),
    }
    write_index_folder(path, info, index, frame, labels)
    return path


def circle(angles: list[float]) -> np.ndarray:
    a = np.asarray(angles)
    return np.stack([np.cos(a), np.sin(a)], axis=1)


def test_same_patient_neighbours_are_excluded(tmp_path: Path):
    # Each patient has two near-identical images with the same label; the closest OTHER patient
    # always has the opposite label. Counting the twin would give precision 1, excluding it gives 0.
    angles = [0.0, 0.01, 0.1, 0.11, 1.5, 1.51, 1.6, 1.61]
    patients = ["a", "a", "b", "b", "c", "c", "d", "d"]
    classes = [0, 0, 1, 1, 0, 0, 1, 1]
    index = load_index(make_index(tmp_path / "idx", circle(angles), patients, classes))
    result = evaluate_index(index, k=1)
    assert result["precision_at_k"] == pytest.approx(0.0)
    assert result["knn"]["accuracy"] == pytest.approx(0.0)
    assert result["n_queries"] == 8 and result["n_patients"] == 4
    # Without the exclusion the twin is the top neighbour (what the metric must not count).
    _, ids = index.search(index.vectors(), 1)
    assert (index.groups()[ids[:, 0]] == index.groups()).all()
    _, ids = index.search(index.vectors(), 3, exclude_groups=list(index.groups()))
    assert not (index.groups()[ids] == index.groups()[:, None]).any()


def test_unknown_patient_excludes_only_the_image_itself(tmp_path: Path):
    angles = [0.0, 0.01, 1.5, 1.51]
    index = load_index(make_index(tmp_path / "idx", circle(angles), [None] * 4, [0, 0, 1, 1]))
    result = evaluate_index(index, k=1)
    assert result["precision_at_k"] == pytest.approx(1.0)
    assert result["knn"]["auroc"] == pytest.approx(1.0)


def test_knn_metrics_on_separable_clusters(tmp_path: Path):
    rng = np.random.default_rng(0)
    a = rng.normal(0.0, 0.05, 20)
    b = rng.normal(1.5, 0.05, 20)
    index = load_index(
        make_index(tmp_path / "idx", circle(list(a) + list(b)), [f"p{i}" for i in range(40)], [0] * 20 + [1] * 20)
    )
    result = evaluate_index(index, k=5)
    assert result["precision_at_k"] == pytest.approx(1.0)
    assert result["knn"]["accuracy"] == pytest.approx(1.0) and result["knn"]["auroc"] == pytest.approx(1.0)
    sample = evaluate_index(index, k=5, max_queries=10)
    assert sample["n_queries"] == 10
