"""Lung-aware preprocessing (preprocess: {lungs: crop|mask}) is applied at training and, from the bundle, at inference."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch

import cxrkit.models.lungs as lungs_mod
from cxrkit.core.errors import ConfigError
from cxrkit.core.preprocess import Preprocessing
from cxrkit.data.transforms import ImageTransform
from tests.conftest import TINY_CNN


@dataclass
class LeftHalf:
    """A stand-in segmenter: the "lungs" are the left half of every image; counts its calls."""

    fingerprint: str = "f" * 64
    calls: int = 0

    def masks(self, images, batch_size: int = 16):
        self.calls += len(images)
        out = []
        for im in images:
            m = np.zeros(np.shape(im), bool)
            m[:, : np.shape(im)[1] // 2] = True
            out.append(m)
        return out


@pytest.fixture
def left_half(monkeypatch, tmp_path):
    monkeypatch.setenv("CXRKIT_HOME", str(tmp_path / "home"))
    fake = LeftHalf()
    monkeypatch.setattr(lungs_mod, "get_segmenter", lambda name="lungs": fake)
    lungs_mod._preprocessor.cache_clear()
    yield fake
    lungs_mod._preprocessor.cache_clear()


def test_transform_masks_and_crops(left_half) -> None:
    img = np.ones((20, 40), np.float32)
    prep = Preprocessing(image_size=8, mean=0.0, std=1.0, lungs="mask", lung_segmenter="fake")
    x = ImageTransform(prep)(img)
    # blanked outside the "lungs" (the two middle columns blend at the edge when resizing)
    assert torch.allclose(x[0, :, :3], torch.ones(8, 3), atol=1e-5) and torch.allclose(x[0, :, 5:], torch.zeros(8, 3))
    img2 = np.zeros((20, 40), np.float32)
    img2[:, :20] = 1.0  # bright where the lungs are: a crop keeps only that
    crop = Preprocessing(image_size=8, mean=0.0, std=1.0, lungs="crop", lung_margin=0.0, lung_segmenter="fake")
    assert torch.allclose(ImageTransform(crop)(img2), torch.ones(1, 8, 8), atol=1e-5)
    plain = ImageTransform(Preprocessing(image_size=8, mean=0.0, std=1.0))(img2)
    assert not torch.allclose(plain, torch.ones(1, 8, 8))
    with pytest.raises(ConfigError, match="crop, mask"):
        Preprocessing(lungs="blur")
    assert Preprocessing.from_dict(crop.to_dict()) == crop  # what the bundle records, it loads back


def test_train_records_and_inference_applies(left_half, learnable, tmp_path) -> None:
    from cxrkit.data.load import load_dataset
    from cxrkit.models import load_bundle
    from cxrkit.models.engine import Engine, InferenceOptions
    from cxrkit.training.recipe import load_recipe
    from cxrkit.training.run import train_from_recipe

    recipe = load_recipe(
        None,
        [
            f"data.sources=[{learnable}]",
            "data.val=0.25",
            f"out={tmp_path / 'run'}",
            *TINY_CNN,
            "augment.enabled=false",
            "preprocess.lungs=mask",
            "preprocess.segmenter=fake",
            "train.epochs=1",
        ],
    )
    result = train_from_recipe(recipe, progress=False)
    cfg = json.loads((tmp_path / "run" / "bundle" / "config.json").read_text())
    assert cfg["preprocessing"]["lungs"] == "mask" and cfg["preprocessing"]["lung_segmenter"] == "fake"
    n_images = 48
    cached = list((tmp_path / "home" / "cache" / "lungs").rglob("*.png"))
    assert len(cached) == n_images  # segmented once before training, then read from the cache
    assert left_half.calls == n_images  # training and validation epochs did not segment again

    bundle = load_bundle(result["bundle"])
    assert bundle.preprocessing.lungs == "mask"
    table = load_dataset(str(learnable))
    engine = Engine(bundle, InferenceOptions(num_workers=0, precision="fp32"))
    got = engine.run_table(table)
    # The same model fed images blanked by hand (right half 0) must give the same probabilities.
    from cxrkit.data.images import load_image

    plain = ImageTransform(Preprocessing(**{**bundle.preprocessing.to_dict(), "lungs": None}))
    xs = []
    for p in table.frame["path"]:
        img = load_image(p)
        img[:, img.shape[1] // 2 :] = 0
        xs.append(plain(img))
    want = engine.probabilities(torch.stack(xs))
    np.testing.assert_allclose(got, want, atol=1e-5)
    unmasked = engine.probabilities(torch.stack([plain(load_image(p)) for p in table.frame["path"]]))
    assert not np.allclose(got, unmasked, atol=1e-3)  # the masking changes what the model sees


def test_equalisation_sees_the_crop_only(left_half) -> None:
    # the "lungs" (left half) are dim and flat, the rest bright: equalised after the crop, the lungs fill [0, 1];
    # equalised over the whole image first, they would stay in its lower half
    rng = np.random.default_rng(0)
    img = np.concatenate([rng.uniform(0.40, 0.45, (20, 20)), rng.uniform(0.9, 1.0, (20, 20))], 1).astype(np.float32)
    crop = Preprocessing(
        image_size=20, mean=0.0, std=1.0, lungs="crop", lung_margin=0.0, lung_segmenter="fake", equalize="hist"
    )
    x = ImageTransform(crop)(img)
    assert x.min() < 0.05 and x.max() > 0.95 and 0.4 < float(x.mean()) < 0.6
