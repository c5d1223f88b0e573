"""Lightning DDP across 2 CPU processes (gloo): the same recipe path as one process."""

from __future__ import annotations

import json

import pytest

from cxrkit.training.recipe import load_recipe
from cxrkit.training.run import train_from_recipe


@pytest.mark.timeout(300)
def test_ddp_two_cpu_processes(learnable, tmp_path):
    recipe = load_recipe(
        None,
        [
            f"data.sources=[{learnable}]",
            "data.val=0.25",
            f"out={tmp_path}",
            "model.arch=tiny_cnn",
            "model.weights=none",
            "model.image_size=32",
            "augment.enabled=false",
            "train.epochs=6",
            "train.batch_size=4",
            "train.lr=0.003",
            "train.optimizer=adam",
            "train.num_workers=0",
            "train.channels_last=false",
            "train.patience=10",
            "train.accelerator=cpu",
            "train.devices=2",
            "train.strategy=ddp_spawn",
        ],
    )
    result = train_from_recipe(recipe, progress=False)
    assert result["world_size"] == 2
    assert result["val_auroc"] > 0.9
    cfg = json.loads((tmp_path / "bundle" / "config.json").read_text())
    assert cfg["extra"]["world_size"] == 2
