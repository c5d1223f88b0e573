"""Recipes are parsed by pydantic models: every shipped recipe parses; bad keys and values are clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from cxrkit.core.errors import ConfigError
from cxrkit.core.precision import PRECISIONS, lightning_precision
from cxrkit.models.engine import PRECISIONS as INFERENCE_PRECISIONS
from cxrkit.models.registry import get_model_info
from cxrkit.training.recipe import load_recipe

RECIPES = sorted((Path(__file__).resolve().parents[2] / "recipes").glob("*.yaml"))


def test_the_recipes_folder_is_found():
    assert len(RECIPES) >= 10


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_every_shipped_recipe_parses(path):
    r = load_recipe(path)
    assert r.name and r.data.sources and isinstance(r.model.image_size, int)
    assert r.train.precision in ("fp32", "bf16")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.lr=fast", r"train\.lr must be a number; got 'fast'\. Fix: e\.g\. --set train\.lr=0\.001"),
        ("model.image_size=big", r"model\.image_size must be a whole number; got 'big'"),
        ("train.epochs=abc", r"train\.epochs must be a whole number; got 'abc'\. Fix: e\.g\. --set train\.epochs=5"),
        ("train.epochs=2.5", r"train\.epochs must be a whole number; got 2\.5"),
        ("train.optimizer=lion", r"train\.optimizer must be adamw, adam, rmsprop or sgd; got 'lion'"),
        ("train.precision=fp16", r"train\.precision must be fp32 or bf16, got 'fp16'"),
        ("train.limit_train_batches=all", r"train\.limit_train_batches must be a whole number or a number"),
        ("data=3", r"data must be a section of keys"),
    ],
)
def test_wrong_values_name_the_key_and_the_fix(override, message):
    with pytest.raises(ConfigError, match=message):
        load_recipe(None, ["data.sources=[a]", override])


def test_unknown_keys_suggest_the_close_name():
    with pytest.raises(ConfigError, match=r"\['train\.epoch'\]; did you mean train\.epochs\? valid under train:"):
        load_recipe(None, ["data.sources=[a]", "train.epoch=3"])
    with pytest.raises(ConfigError, match=r"\['nmae'\]; did you mean name\?"):
        load_recipe(None, ["data.sources=[a]", "nmae=x"])
    # Every problem at once: the unknown key and the bad value.
    with pytest.raises(ConfigError, match=r"augment\.gama.*train\.lr must be a number"):
        load_recipe(None, ["data.sources=[a]", "augment.gama=0.2", "train.lr=fast"])


def test_image_size_defaults_to_the_registry_input_size():
    for arch in ("tiny_cnn", "small_cnn", "efficientnet_lite1", "efficientnet_lite2"):
        r = load_recipe(None, ["data.sources=[a]", f"model.arch={arch}"])
        assert r.model.image_size == get_model_info(arch).preprocessing.image_size
    assert load_recipe(None, ["data.sources=[a]", "model.arch=tiny_cnn", "model.image_size=32"]).model.image_size == 32
    embeddings = ["model.arch=knn", "model.features=embeddings", "model.embed_arch=efficientnet_lite2"]
    assert load_recipe(None, ["data.sources=[a]", *embeddings]).model.image_size == 260
    assert load_recipe(None, ["data.sources=[a]", "model.arch=resnet18"]).to_dict()["model"]["image_size"] == 224


def test_one_precision_vocabulary():
    # Lightning's names (older recipes) are read as cxrkit's; the trainer gets Lightning's back.
    assert load_recipe(None, ["data.sources=[a]", "train.precision=bf16-mixed"]).train.precision == "bf16"
    assert load_recipe(None, ["data.sources=[a]", "train.precision=32-true"]).train.precision == "fp32"
    assert (lightning_precision("bf16"), lightning_precision("fp32")) == ("bf16-mixed", "32-true")
    assert ("auto", *PRECISIONS) == INFERENCE_PRECISIONS  # inference adds only "auto" to the same words


def test_a_single_source_or_teacher_may_be_a_string():
    r = load_recipe(None, ["data.sources=some/folder", "train.distill_from=teacher/bundle"])
    assert r.data.sources == ["some/folder"] and r.train.distill_from == ["teacher/bundle"]
