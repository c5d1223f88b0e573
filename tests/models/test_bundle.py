"""Bundles: atomic save, flag-free load with identical predictions, clear errors, name resolution."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cxrkit.core.errors import BundleError, ConfigError, UnknownNameError
from cxrkit.core.preprocess import Preprocessing
from cxrkit.models import create_model, list_bundles, load_bundle, logits_to_proba, resolve_bundle, save_bundle
from cxrkit.models.bundle import SHIPPED_DIR


def _save(path, ls, arch="tiny_cnn", **kw):
    torch.manual_seed(0)
    model = create_model(arch, ls, image_size=32) if arch == "tiny_cnn" else create_model(arch, ls, weights="none")
    pre = Preprocessing(image_size=32, mean=0.5, std=0.25)
    save_bundle(
        path,
        model,
        arch,
        ls,
        pre,
        thresholds=kw.pop("thresholds", None),
        metrics={"auroc": np.float64(0.91), "n": np.int64(40)},
        data_summary={"dataset": "toy", "source": "generated", "splits": {"train": 30, "val": 10}},
        license="CC-BY-4.0 (toy data)",
        extra={"seed": 0},
        **kw,
    )
    return model


@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel"])
def test_round_trip_identical_predictions(tmp_path, label_spaces, task):
    ls = label_spaces[task]
    model = _save(tmp_path / "b", ls).eval()
    bundle = load_bundle(tmp_path / "b")
    assert not bundle.model.training
    x = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        p = logits_to_proba(bundle.model(x), ls).numpy()
    assert p.shape == (3, ls.num_outputs)
    with torch.no_grad():
        logits = model(x)
    expected = torch.softmax(logits, 1) if task == "multiclass" else torch.sigmoid(logits)
    np.testing.assert_array_equal(p, expected.numpy())
    if task == "multiclass":
        np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-6)
    assert bundle.label_space == ls and bundle.preprocessing.mean == 0.5
    assert bundle.model_kwargs == {"image_size": 32}
    outputs = [ls.positive] if task == "binary" else list(ls.classes)
    # multiclass: no operating class, so the arg-max decides and no threshold is stored
    assert bundle.thresholds == ({} if task == "multiclass" else dict.fromkeys(outputs, 0.5))
    assert bundle.metrics == {"auroc": 0.91, "n": 40}
    assert len(bundle.fingerprint) == 64


def test_bundle_contents_and_card(tmp_path, label_spaces):
    import cxrkit

    ls = label_spaces["binary"]
    _save(tmp_path / "b", ls, thresholds={"pneumonia": 0.3}, arch="resnet18")
    files = sorted(p.name for p in (tmp_path / "b").iterdir())
    assert files == ["MODEL_CARD.md", "config.json", "model.safetensors"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dir left
    cfg = json.loads((tmp_path / "b" / "config.json").read_text())
    assert cfg["architecture"] == "resnet18" and cfg["code_version"] == cxrkit.__version__
    assert cfg["thresholds"] == {"pneumonia": 0.3}
    assert cfg["label_space"] == {"task": "binary", "classes": ["normal", "pneumonia"]}
    card = (tmp_path / "b" / "MODEL_CARD.md").read_text()
    for text in (
        "not a medical device",
        "CC-BY-4.0",
        "auroc",
        "0.91",
        "pneumonia",
        "| train | 30 |",
        "Limitations",
        cfg["weights_sha256"],
    ):
        assert text in card, text
    assert load_bundle(tmp_path / "b").architecture == "resnet18"


def test_save_checks_architecture_and_thresholds(tmp_path, label_spaces):
    ls = label_spaces["multiclass"]
    model = create_model("tiny_cnn", ls, image_size=32)
    pre = Preprocessing(image_size=32)
    with pytest.raises(ConfigError, match="does not match"):
        save_bundle(tmp_path / "x", model, "small_cnn", ls, pre, None, {}, {}, "n/a")
    with pytest.raises(ConfigError, match="name their class"):
        save_bundle(tmp_path / "x", model, "tiny_cnn", ls, pre, [0.5, 0.5], {}, {}, "n/a")
    with pytest.raises(ConfigError, match="probabilities"):
        save_bundle(tmp_path / "x", model, "tiny_cnn", ls, pre, {"covid": 1.5}, {}, {}, "n/a")
    assert not (tmp_path / "x").exists()


def test_errors_name_file_and_fix(tmp_path, label_spaces):
    ls = label_spaces["multilabel"]
    b = tmp_path / "b"
    _save(b, ls)

    weights = b / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-1] ^= 0xFF
    weights.write_bytes(bytes(raw))
    with pytest.raises(BundleError, match="sha256") as err:
        load_bundle(b)
    assert "model.safetensors" in str(err.value) and "re-export" in str(err.value)

    _save(b, ls)
    cfg = json.loads((b / "config.json").read_text())
    cfg["label_space"]["classes"] = ["a", "b"]  # weights now have the wrong head shape
    (b / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(BundleError, match="does not fit") as err:
        load_bundle(b)
    assert str(b / "model.safetensors") in str(err.value)

    (b / "config.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON") as err:
        load_bundle(b)
    assert str(b / "config.json") in str(err.value)

    _save(b, ls)
    (b / "model.safetensors").unlink()
    with pytest.raises(BundleError, match=r"has no model\.safetensors"):
        load_bundle(b)
    (b / "config.json").unlink()
    with pytest.raises(BundleError, match=r"has no config\.json"):
        load_bundle(b)
    with pytest.raises(BundleError, match="does not exist"):
        load_bundle(tmp_path / "nowhere")


def test_resolve_by_name(tmp_path, label_spaces):
    home = tmp_path / "cxrkit_home"  # set by the autouse fixture
    _save(home / "models" / "toy-cxr", label_spaces["binary"])
    assert "toy-cxr" in list_bundles()
    assert resolve_bundle("toy-cxr") == home / "models" / "toy-cxr"
    assert load_bundle("toy-cxr").label_space == label_spaces["binary"]
    with pytest.raises(UnknownNameError) as err:
        resolve_bundle("toy-cx")
    assert "'toy-cxr'" in str(err.value)
    assert (SHIPPED_DIR / "README.md").is_file()


def test_multiclass_operating_class_round_trip_card_and_load_errors(tmp_path, label_spaces):
    ls = label_spaces["multiclass"]
    _save(tmp_path / "b", ls, thresholds={"COVID": 0.27})
    bundle = load_bundle(tmp_path / "b")
    assert bundle.thresholds == {"covid": 0.27}
    card = (tmp_path / "b" / "MODEL_CARD.md").read_text()
    assert "**covid** whenever its probability is at least 0.27" in card
    _save(tmp_path / "argmax", ls)
    assert "most probable class (arg-max)" in (tmp_path / "argmax" / "MODEL_CARD.md").read_text()

    cfg_file = tmp_path / "b" / "config.json"
    cfg = json.loads(cfg_file.read_text())
    cfg["thresholds"] = dict.fromkeys(ls.classes, 0.5)  # as bundles before operating points wrote it
    cfg_file.write_text(json.dumps(cfg))
    assert load_bundle(tmp_path / "b").thresholds == {}
    cfg["thresholds"] = {"covid": 0.3, "normal": 0.2}
    cfg_file.write_text(json.dumps(cfg))
    with pytest.raises(BundleError, match="at most one threshold") as err:
        load_bundle(tmp_path / "b")
    assert str(cfg_file) in str(err.value)


def test_card_shows_the_operating_point_with_its_cis(tmp_path, label_spaces):
    from cxrkit.evaluation import evaluate_predictions, without_curves
    from cxrkit.models.card import render_model_card

    ls = label_spaces["multiclass"]
    rng = np.random.default_rng(0)
    y = np.eye(3)[rng.integers(0, 3, 60)]
    p = np.clip(y * 0.6 + rng.uniform(0, 0.4, (60, 3)), 0, None)
    p /= p.sum(1, keepdims=True)
    metrics = without_curves(evaluate_predictions(ls, y, p, thresholds={"covid": 0.3}, n_boot=50))
    _save(tmp_path / "b", ls, thresholds={"covid": 0.3})
    config = json.loads((tmp_path / "b" / "config.json").read_text())
    card = render_model_card({**config, "metrics": {"leave_source_out": metrics}})
    op = metrics["operating_point"]
    row = next(line for line in card.splitlines() if line.startswith("| covid vs rest |"))
    assert f"| {op['n']} | {op['n_positive']} | 0.3 |" in row
    assert f"{op['specificity']:.4g} [{op['specificity_ci'][0]:.3g}" in row
