"""preprocess.equalize (None | hist | clahe): per-image intensity equalisation, recorded in the bundle."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cxrkit.core.errors import ConfigError
from cxrkit.core.preprocess import Preprocessing
from cxrkit.core.task import LabelSpace, TaskType
from cxrkit.data.transforms import ImageTransform, equalize, resize
from cxrkit.models import create_model, load_bundle, save_bundle
from cxrkit.models.engine import Engine, InferenceOptions
from cxrkit.training.distill import load_teachers
from cxrkit.training.fit import preprocessing_for
from cxrkit.training.recipe import parse_recipe

BINARY = LabelSpace(TaskType.BINARY, ("normal", "pneumonia"))


def low_contrast(h: int = 48, w: int = 40, seed: int = 0) -> np.ndarray:
    """A dim, flat image: values in [0.40, 0.50] (a soft gradient plus noise), as a grey scanner gives."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = 0.40 + 0.06 * (yy / h + xx / w) / 2 + rng.uniform(0, 0.04, (h, w))
    return img.astype(np.float32)


def test_hist_spreads_a_low_contrast_histogram_to_uniform():
    img = low_contrast()
    out = equalize(img, "hist")
    assert out.dtype == np.float32 and out.shape == img.shape
    assert np.ptp(img) < 0.11 and out.min() < 0.01 and out.max() == pytest.approx(1.0)
    # equalised: the quantiles of the output are those of a uniform [0, 1] distribution
    q = np.quantile(out, [0.1, 0.25, 0.5, 0.75, 0.9])
    np.testing.assert_allclose(q, [0.1, 0.25, 0.5, 0.75, 0.9], atol=0.03)
    # monotone: the order of the pixels is kept (it only re-maps grey levels)
    order = np.argsort(img.ravel(), kind="stable")
    assert np.all(np.diff(out.ravel()[order]) >= 0)


def test_clahe_raises_contrast_and_stays_in_range():
    img = low_contrast()
    out = equalize(img, "clahe")
    assert out.dtype == np.float32 and out.shape == img.shape
    assert out.min() >= 0 and out.max() <= 1
    assert out.std() > 3 * img.std()
    # not global equalisation: its output differs from hist's
    assert not np.allclose(out, equalize(img, "hist"), atol=0.05)


def test_two_exposures_of_one_image_equalise_alike():
    # the point of it: brightness/contrast of the scanner (an affine change of grey levels) is removed
    img = low_contrast()
    darker = 0.5 * img + 0.1
    np.testing.assert_allclose(equalize(darker, "hist"), equalize(img, "hist"), atol=1e-2)


def test_none_leaves_the_transform_output_as_before():
    img = np.random.default_rng(1).random((30, 26)).astype(np.float32)
    prep = Preprocessing(image_size=16, mean=0.449, std=0.226, in_chans=3)
    # the pipeline before equalisation existed: resize, normalise, repeat channels
    before = ((resize(torch.from_numpy(img)[None], 16, "squash") - 0.449) / 0.226).expand(3, -1, -1)
    assert torch.equal(ImageTransform(prep)(img), before)
    assert equalize(img, None) is img
    eq = ImageTransform(Preprocessing(image_size=16, mean=0.449, std=0.226, in_chans=3, equalize="hist"))(img)
    assert not torch.allclose(eq, before)


def test_transform_equalises_before_resizing():
    img = low_contrast(64, 64)
    x = ImageTransform(Preprocessing(image_size=64, mean=0.0, std=1.0, equalize="hist"))(img)
    np.testing.assert_array_equal(x[0].numpy(), equalize(img, "hist"))  # same size: resize is a no-op


def test_bad_values_name_the_fix():
    with pytest.raises(ConfigError, match=r"equalize must be hist, clahe, zscore or null.*Fix"):
        Preprocessing(equalize="gamma")
    with pytest.raises(ConfigError, match="Unknown equalize mode"):
        equalize(low_contrast(), "gamma")
    with pytest.raises(ConfigError, match="equalize"):
        parse_recipe({"preprocess": {"equalize": "gamma"}})


def test_recipe_records_it_in_the_preprocessing():
    recipe = parse_recipe({"model": {"arch": "tiny_cnn", "image_size": 32}, "preprocess": {"equalize": "clahe"}})
    assert recipe.preprocess.equalize == "clahe"
    assert preprocessing_for(recipe).equalize == "clahe"
    assert preprocessing_for(parse_recipe({"model": {"arch": "tiny_cnn"}})).equalize is None


def _bundle(path, prep: Preprocessing):
    torch.manual_seed(0)
    model = create_model("tiny_cnn", BINARY, image_size=32, weights="none")
    save_bundle(path, model, "tiny_cnn", BINARY, prep, None, {}, {}, "toy")
    return load_bundle(path)


def test_bundle_round_trip_and_old_bundles(tmp_path):
    b = _bundle(tmp_path / "eq", Preprocessing(image_size=32, equalize="clahe"))
    assert b.preprocessing.equalize == "clahe"
    assert json.loads((tmp_path / "eq" / "config.json").read_text())["preprocessing"]["equalize"] == "clahe"
    # without equalisation the stored dict is what it was before the field existed, and such dicts load
    plain = _bundle(tmp_path / "plain", Preprocessing(image_size=32))
    stored = json.loads((tmp_path / "plain" / "config.json").read_text())["preprocessing"]
    assert "equalize" not in stored and plain.preprocessing.equalize is None
    old = {"image_size": 64, "resize": "squash", "mean": 0.5, "std": 0.5, "in_chans": 1, "lungs": "crop"}
    assert Preprocessing.from_dict(old).equalize is None
    assert Preprocessing.from_dict(Preprocessing(equalize="hist").to_dict()).equalize == "hist"


def test_engine_keeps_equalised_inputs_on_the_cpu_path(tmp_path, monkeypatch):
    import cxrkit.models.gpu_decode as gpu_decode

    monkeypatch.setattr(gpu_decode, "gpu_jpeg_available", lambda device_type="cuda": True)  # as with nvJPEG
    decoders = []
    for name, eq in (("plain", None), ("eq", "hist")):
        eng = Engine(
            _bundle(tmp_path / name, Preprocessing(image_size=32, equalize=eq)), InferenceOptions(decode="gpu")
        )
        eng.device = torch.device("cuda")  # as on a GPU machine; no GPU is touched
        decoders.append(eng.decoder)
    assert decoders == ["gpu", "cpu"]  # nvJPEG's device preprocessing would skip the equalisation


def test_teachers_must_equalise_like_the_student(tmp_path):
    _bundle(tmp_path / "t", Preprocessing(image_size=32, equalize="clahe"))
    with pytest.raises(ConfigError, match="equalize"):
        load_teachers([str(tmp_path / "t")], BINARY, Preprocessing(image_size=32), 1.0)
    assert len(
        load_teachers([str(tmp_path / "t")], BINARY, Preprocessing(image_size=32, equalize="clahe"), 1.0).members
    )


def test_zscore_standardises_each_image_affinely():
    img = low_contrast()
    out = equalize(img, "zscore")
    assert out.dtype == np.float32
    assert float(out.mean()) == pytest.approx(0.5, abs=1e-5) and float(out.std()) == pytest.approx(0.25, abs=1e-4)
    np.testing.assert_allclose(equalize(0.5 * img + 0.1, "zscore"), out, atol=1e-4)  # brightness/contrast gone
    assert np.corrcoef(out.ravel(), img.ravel())[0, 1] == pytest.approx(1.0)  # affine: shape of histogram kept
    np.testing.assert_array_equal(equalize(np.full((4, 4), 0.3, np.float32), "zscore"), np.full((4, 4), 0.5))
    assert parse_recipe({"preprocess": {"equalize": "zscore"}}).preprocess.equalize == "zscore"
