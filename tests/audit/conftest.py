"""Synthetic data with a known lung region, one set with a corner-marker shortcut and one without.

Images are 32 px; the "lungs" are two fixed rectangles (``lung_mask``), so the mask provider is exact.
- shortcut set: PNEUMONIA images carry a bright 3x3 marker in the top-left corner (outside the lungs,
  inside the 10% border) and come from source "siteA", NORMAL ones from "siteB"; the lungs look the
  same in both classes. A model can only learn the marker.
- clean set: PNEUMONIA images have a bright blob in the left lung, the sources are mixed at random.
A tiny CNN is trained on each (plain torch loop, ~1-2 s) and wrapped in an in-memory Bundle.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from cxrkit.core.preprocess import Preprocessing
from cxrkit.core.task import LabelSpace, TaskType
from cxrkit.data.table import CxrTable
from cxrkit.data.transforms import ImageTransform
from cxrkit.models import Bundle

SIZE = 32
SPACE = LabelSpace(TaskType.BINARY, ("NORMAL", "PNEUMONIA"))
PREP = Preprocessing(image_size=SIZE, resize="squash", mean=0.5, std=0.25)


def lung_mask(shape: tuple[int, int]) -> np.ndarray:
    h, w = shape
    m = np.zeros((h, w), bool)
    m[h // 4 : 3 * h // 4, w // 6 : 5 * w // 12] = True
    m[h // 4 : 3 * h // 4, 7 * w // 12 : 5 * w // 6] = True
    return m


def exact_lungs(images):
    return [lung_mask(np.asarray(i).shape) for i in images]


def make_set(root: Path, kind: str, n: int = 64, seed: int = 0) -> CxrTable:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    # a hard-edged disc well inside the left lung: nothing of it survives blanking the lungs
    blob = (((yy - 16) ** 2 + (xx - 9) ** 2) <= 9).astype(float)
    rows, labels = [], []
    for i in range(n):
        pos = i % 2 == 1
        img = rng.uniform(0.3, 0.6, (SIZE, SIZE))
        if kind == "shortcut":
            if pos:
                img[0:3, 0:3] = 1.0
            source = "siteA" if pos else "siteB"
        else:
            img = img + (0.4 * blob if pos else 0.0)
            source = "siteA" if rng.random() < 0.5 else "siteB"
        path = root / f"img{i:03d}.png"
        Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(path)
        rows.append({"path": str(path), "patient_id": f"p{i}", "source": source, "view": "PA" if i % 3 else "AP"})
        labels.append([0.0, 1.0] if pos else [1.0, 0.0])
    return CxrTable(pd.DataFrame(rows), np.array(labels, np.float32), SPACE)


class GapCNN(torch.nn.Module):
    """Two full-resolution convolutions, global average pooling, a linear head: Grad-CAM localises on it
    (on the flatten-dense ``tiny_cnn`` a CAM is nearly uniform). Same interface as the registry's models."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(1, width, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.Conv2d(width, width, 3, padding=1),
            torch.nn.ReLU(),
        )
        self.head = torch.nn.Linear(width, 1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.mean(dim=(2, 3))
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> torch.nn.Module:
        return self.head


def train_tiny(table: CxrTable, steps: int = 60, seed: int = 0) -> Bundle:
    from cxrkit.data.images import load_image

    torch.manual_seed(seed)
    model = GapCNN()
    tf = ImageTransform(PREP)
    x = torch.stack([tf(load_image(p)) for p in table.frame["path"]])
    y = torch.from_numpy(table.labels[:, 1:2])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(x), (16,), generator=gen)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return Bundle(
        path=Path(f"/memory/{table.frame['path'].iloc[0]}"),
        model=model,
        architecture="gap_cnn (test)",
        model_kwargs={},
        label_space=SPACE,
        preprocessing=PREP,
        thresholds={"PNEUMONIA": 0.5},
        metrics={},
        data_summary={},
        license="test",
        code_version="0",
        created="",
        fingerprint="0" * 64,
    )


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def shortcut_set(tmp_path_factory) -> CxrTable:
    return make_set(tmp_path_factory.mktemp("shortcut"), "shortcut")


@pytest.fixture(scope="session")
def clean_set(tmp_path_factory) -> CxrTable:
    return make_set(tmp_path_factory.mktemp("clean"), "clean", seed=1)


@pytest.fixture(scope="session")
def shortcut_model(shortcut_set) -> Bundle:
    torch.set_num_threads(1)
    return train_tiny(shortcut_set)


@pytest.fixture(scope="session")
def clean_model(clean_set) -> Bundle:
    torch.set_num_threads(1)
    return train_tiny(clean_set)


def _audit_fresh_images(model: Bundle, kind: str, tmp_path_factory, seed: int):
    """The audit of ``model`` on 60 fresh images of ``kind`` (not the ones it was trained on), exact lungs."""
    from cxrkit.audit import AuditOptions, LungMasks, audit_table
    from cxrkit.models.engine import InferenceOptions

    torch.set_num_threads(1)
    held_out = make_set(tmp_path_factory.mktemp(f"{kind}_test"), kind, n=60, seed=seed)
    return audit_table(
        model,
        held_out,
        held_out.labels,
        LungMasks(exact_lungs, "exact"),
        AuditOptions(cam_per_class=12),
        InferenceOptions(num_workers=0),
    )


@pytest.fixture(scope="session")
def shortcut_audit(shortcut_set, shortcut_model, tmp_path_factory):
    return _audit_fresh_images(shortcut_model, "shortcut", tmp_path_factory, seed=10)


@pytest.fixture(scope="session")
def clean_audit(clean_set, clean_model, tmp_path_factory):
    return _audit_fresh_images(clean_model, "clean", tmp_path_factory, seed=11)
