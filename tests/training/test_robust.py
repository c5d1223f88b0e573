"""Robust-training options on tiny generated data: X-ray augmentation (device/workers)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cxrkit.core.errors import ConfigError
from cxrkit.data.augment import Augmentation
from cxrkit.training.recipe import load_recipe
from cxrkit.training.run import train_from_recipe
from tests.conftest import TINY_CNN

TINY = [*TINY_CNN, "train.epochs=2"]
XRAY = ["augment.gamma=0.3", "augment.clahe=3", "augment.noise=0.02", "augment.jpeg=50", "augment.crop=0.1"]


def tiny_recipe(source, out, *extra: str):
    return load_recipe(None, [f"data.sources=[{source}]", f"out={out}", *TINY, *extra])


def test_recipe_augment_section_is_the_data_layer_spec():
    r = load_recipe(None, ["data.sources=[a]", "augment.gamma=0.2", "augment.jpeg=60", "augment.run_on=workers"])
    assert type(r.augment) is Augmentation  # one spec, no copy field by field
    assert r.augment.gamma == 0.2 and r.augment.jpeg == 60 and r.augment.run_on == "workers"
    with pytest.raises(ConfigError, match=r"augment\.jpeg"):
        load_recipe(None, ["data.sources=[a]", "augment.jpeg=101"])
    with pytest.raises(ConfigError, match=r"Unknown recipe key\(s\) \['augment.gama'\]"):
        load_recipe(None, ["data.sources=[a]", "augment.gama=0.2"])


@pytest.mark.parametrize("on", ["device", pytest.param("workers", marks=pytest.mark.slow)])
def test_training_with_xray_augmentation(learnable, tmp_path, on):
    summary = train_from_recipe(tiny_recipe(learnable, tmp_path, f"augment.run_on={on}", *XRAY), progress=False)
    config = json.loads((tmp_path / "bundle" / "config.json").read_text())
    assert config["extra"]["recipe"]["augment"]["jpeg"] == 50 and config["extra"]["recipe"]["augment"]["run_on"] == on
    assert summary["epochs_run"] == 2 and summary["val_auroc"] == summary["val_auroc"]  # not NaN
    # train.plots=false (TINY): the numbers and reports are written, no figure (the `trained` run has them)
    assert (tmp_path / "metrics.csv").is_file() and (tmp_path / "val_report" / "report.html").is_file()
    assert not list(tmp_path.rglob("*.png"))


# -- mixup / cutmix with unknown (NaN) labels -------------------------------------------------------


def test_mix_batch_keeps_unknown_labels_unknown():
    import torch
    from timm.data import Mixup

    from cxrkit.training.losses import mix_batch

    torch.manual_seed(0)
    np.random.seed(0)
    x = torch.stack([torch.full((1, 8, 8), float(i)) for i in range(4)])
    y = torch.tensor([[1.0, 0.0], [0.0, float("nan")], [1.0, 1.0], [0.0, 0.0]])
    mixed_x, mixed_y = mix_batch(Mixup(mixup_alpha=1.0, cutmix_alpha=0.0, prob=1.0, label_smoothing=0), x.clone(), y)
    lam = float(mixed_x[0, 0, 0, 0] - 3) / (0 - 3)  # image 0 is mixed with image 3 (the batch reversed)
    assert 0 < lam < 1
    torch.testing.assert_close(mixed_y[0], lam * y[0] + (1 - lam) * y[3])
    assert torch.isnan(mixed_y[1, 1]) and torch.isnan(mixed_y[2, 1])  # unknown in either partner: unknown
    assert not torch.isnan(mixed_y[1, 0])


def test_soft_multiclass_targets_and_distillation_loss():
    import torch

    from cxrkit.core.task import LabelSpace, TaskType
    from cxrkit.training.losses import TaskLoss, distillation_loss

    space = LabelSpace(TaskType.MULTICLASS, ("A", "B", "C"))
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    soft = torch.tensor([[0.7, 0.3, 0.0], [0.0, 0.5, 0.5], [float("nan")] * 3])
    expected = -(soft[:2] * logits[:2].log_softmax(1)).sum(1).mean()
    torch.testing.assert_close(TaskLoss(space)(logits, soft), expected)  # the NaN row leaves the loss
    teacher = torch.tensor([[0.9], [0.2]])
    at_teacher = distillation_loss(torch.logit(teacher), teacher, TaskType.BINARY)
    elsewhere = distillation_loss(torch.tensor([[0.0], [0.0]]), teacher, TaskType.BINARY)
    assert at_teacher < elsewhere
    probs = torch.tensor([[0.6, 0.3, 0.1]])
    assert distillation_loss(probs.log(), probs, TaskType.MULTICLASS).abs() < 1e-6  # KL of equal softmaxes


# -- EMA, mixup/cutmix and flip TTA end to end -----------------------------------------------------


def test_ema_mixup_cutmix_and_flip_tta(learnable, tmp_path):
    import torch

    from cxrkit.data import load_dataset
    from cxrkit.models import load_bundle
    from cxrkit.models.engine import Engine, InferenceOptions
    from cxrkit.training.precision import validation_probabilities

    extra = ["train.ema=0.9", "train.mixup=0.4", "train.cutmix=1.0", "model.tta=hflip", "augment.hflip=0.5"]
    summary = train_from_recipe(tiny_recipe(learnable, tmp_path, *extra), progress=False)
    bundle = load_bundle(summary["bundle"])
    assert bundle.extra["tta"] == "hflip" and bundle.extra["weights_averaging"] == "ema 0.9"
    ckpt = torch.load(tmp_path / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    for k, v in bundle.model.state_dict().items():  # the bundle holds the EMA weights, not the raw ones
        torch.testing.assert_close(v, ckpt[f"ema.module.{k}"])
    assert any(not torch.equal(ckpt[f"ema.module.{k}"], ckpt[f"model.{k}"]) for k in bundle.model.state_dict())
    engine = Engine(bundle, InferenceOptions(num_workers=0, precision="fp32"))
    assert engine.describe()["tta"] == "hflip"
    x = torch.rand(3, 1, 32, 32)
    np.testing.assert_allclose(engine.probabilities(x), engine.probabilities(x.flip(-1)), atol=1e-5)
    table = load_dataset(learnable).subset(np.arange(6))
    space, prep = bundle.label_space, bundle.preprocessing
    direct = validation_probabilities(bundle.model, space, prep, table, tta="hflip", num_workers=0)
    np.testing.assert_allclose(engine.run_table(table), direct, atol=1e-5)
    assert not np.allclose(direct, validation_probabilities(bundle.model, space, prep, table, num_workers=0))


# -- distillation from an ensemble of bundles ---------------------------------------------------------


def test_distillation_from_bundles(learnable, trained, tmp_path):
    import pandas as pd

    from cxrkit.core.preprocess import Preprocessing
    from cxrkit.core.task import LabelSpace, TaskType
    from cxrkit.models import load_bundle
    from cxrkit.training.distill import load_teachers

    teacher = trained[0]["bundle"]
    summary = train_from_recipe(
        tiny_recipe(learnable, tmp_path, f"train.distill_from=[{teacher}, {teacher}]", "train.distill_alpha=0.7"),
        progress=False,
    )
    bundle = load_bundle(summary["bundle"])
    assert bundle.extra["distilled_from"] == [teacher, teacher]
    logged = pd.read_csv(tmp_path / "metrics.csv")
    assert logged["train_distill_loss"].notna().sum() == 2  # one value per epoch
    space, prep = bundle.label_space, bundle.preprocessing
    with pytest.raises(ConfigError, match="predicts binary"):
        load_teachers([teacher], LabelSpace(TaskType.MULTICLASS, ("A", "B", "C")), prep, 1.0)
    with pytest.raises(ConfigError, match="normalises inputs"):
        load_teachers([teacher], space, Preprocessing(image_size=32, mean=0.1, std=0.2), 1.0)


@pytest.mark.parametrize("features", ["pixels", "embeddings"])
def test_classical_baseline_from_a_recipe(learnable, tmp_path, features):
    """KNN on pixels (decoded by the table loader) or on embeddings (through the inference engine)."""
    extra = [f"model.features={features}", "model.embed_arch=tiny_cnn", "model.image_size=64", "model.k=3"]
    recipe = tiny_recipe(learnable, tmp_path, "model.arch=knn", *extra)
    summary = train_from_recipe(recipe, progress=False)
    assert summary["n_val"] == 12 and 0 <= summary["val_auroc"] <= 1
    assert (tmp_path / "baseline").is_dir()
