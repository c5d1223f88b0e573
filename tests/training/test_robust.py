"""Robust-training options on tiny generated data: X-ray augmentation (device/workers)."""

from __future__ import annotations

import json

import pytest

from cxrkit.core.errors import ConfigError
from cxrkit.data.augment import Augmentation
from cxrkit.training.recipe import load_recipe
from cxrkit.training.run import train_from_recipe

TINY = [
    "data.val=0.25",
    "model.arch=tiny_cnn",
    "model.weights=none",
    "model.image_size=32",
    "train.epochs=2",
    "train.batch_size=8",
    "train.lr=0.003",
    "train.optimizer=adam",
    "train.num_workers=0",
    "train.channels_last=false",
    "train.patience=10",
]
XRAY = ["augment.gamma=0.3", "augment.clahe=3", "augment.noise=0.02", "augment.jpeg=50", "augment.crop=0.1"]


def tiny_recipe(source, out, *extra: str):
    return load_recipe(None, [f"data.sources=[{source}]", f"out={out}", *TINY, *extra])


def test_recipe_augment_section_is_the_data_layer_spec():
    r = load_recipe(None, ["data.sources=[a]", "augment.gamma=0.2", "augment.jpeg=60", "augment.on=workers"])
    assert type(r.augment) is Augmentation  # one spec, no copy field by field
    assert r.augment.gamma == 0.2 and r.augment.jpeg == 60 and r.augment.on == "workers"
    with pytest.raises(ConfigError, match=r"augment\.jpeg"):
        load_recipe(None, ["data.sources=[a]", "augment.jpeg=101"])
    with pytest.raises(ConfigError, match=r"Unknown recipe key\(s\) \['augment.gama'\]"):
        load_recipe(None, ["data.sources=[a]", "augment.gama=0.2"])


@pytest.mark.parametrize("on", ["device", "workers"])
def test_training_with_xray_augmentation(learnable, tmp_path, on):
    summary = train_from_recipe(tiny_recipe(learnable, tmp_path, f"augment.on={on}", *XRAY), progress=False)
    config = json.loads((tmp_path / "bundle" / "config.json").read_text())
    assert config["extra"]["recipe"]["augment"]["jpeg"] == 50 and config["extra"]["recipe"]["augment"]["on"] == on
    assert summary["epochs_run"] == 2 and summary["val_auroc"] == summary["val_auroc"]  # not NaN
