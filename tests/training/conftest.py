from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def make_learnable_folder(root: Path, n_per_class: int = 24, size: int = 40, seed: int = 0) -> Path:
    """NORMAL images have a dark centre, PNEUMONIA a bright blob: learnable in a few steps.

    File names follow the Kaggle pattern so patients are known (two images per patient).
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    blob = np.exp(-((yy - size / 2) ** 2 + (xx - size / 2) ** 2) / (2 * (size / 6) ** 2))
    for cls in ("NORMAL", "PNEUMONIA"):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            base = rng.uniform(0.2, 0.5, (size, size))
            img = base + (0.45 * blob if cls == "PNEUMONIA" else -0.15 * blob)
            name = f"IM-{i // 2:04d}-{i % 2 + 1:04d}.png" if cls == "NORMAL" else f"person{i // 2}_bacteria_{i}.png"
            Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(root / cls / name)
    return root


@pytest.fixture(scope="session")
def learnable(tmp_path_factory) -> Path:
    return make_learnable_folder(tmp_path_factory.mktemp("learnable") / "chest_xray")


@pytest.fixture(scope="session")
def trained(learnable, tmp_path_factory):
    """One tiny CNN trained once for the session (a few seconds)."""
    from cxrkit.training.recipe import load_recipe
    from cxrkit.training.run import train_from_recipe

    out = tmp_path_factory.mktemp("run")
    recipe = load_recipe(
        None,
        [
            f"data.sources=[{learnable}]",
            "data.val=0.25",
            f"out={out}",
            "model.arch=tiny_cnn",
            "model.weights=none",
            "model.image_size=32",
            "augment.enabled=false",
            "train.epochs=6",
            "train.batch_size=8",
            "train.lr=0.003",
            "train.optimizer=adam",
            "train.num_workers=0",
            "train.channels_last=false",
            "train.patience=10",
        ],
    )
    return train_from_recipe(recipe, progress=False), out
