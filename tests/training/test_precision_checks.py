"""Reduced-precision checks compare decisions as well as AUROC; INT8 (ONNX Runtime QDQ) end to end."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from cxrkit.core.errors import ConfigError
from cxrkit.core.preprocess import Preprocessing
from cxrkit.core.task import LabelSpace, TaskType
from cxrkit.data.table import CxrTable
from cxrkit.models import create_model, load_bundle, save_bundle
from cxrkit.models.card import render_model_card
from cxrkit.models.engine import Engine, InferenceOptions
from cxrkit.models.quantize import INT8_FILE
from cxrkit.training.precision import _compare, decision_agreement, run_int8_check

BINARY = LabelSpace(TaskType.BINARY, ("normal", "pneumonia"))
MULTI = LabelSpace(TaskType.MULTILABEL, ("effusion", "nodule"))


def test_decision_agreement_counts_images_whose_findings_flip():
    a = np.array([[0.04], [0.06], [0.5], [0.9]])
    b = np.array([[0.06], [0.06], [0.5], [0.01]])  # row 0 crosses 0.05, row 3 crosses it downwards
    assert decision_agreement(BINARY, a, b, {"pneumonia": 0.05}) == 0.5
    assert decision_agreement(BINARY, a, b, {"pneumonia": 0.95}) == 1.0
    m1, m2 = np.array([[0.2, 0.7], [0.6, 0.1]]), np.array([[0.2, 0.4], [0.6, 0.1]])
    assert decision_agreement(MULTI, m1, m2, {"effusion": 0.5, "nodule": 0.5}) == 0.5


def test_auroc_alone_no_longer_passes_when_decisions_move():
    rng = np.random.default_rng(0)
    labels = (rng.random(400) < 0.5).astype(np.float32)
    p32 = np.clip(labels * 0.3 + rng.random(400) * 0.7, 0, 1)[:, None]
    p_low = p32 * 0.98  # same ranking (same AUROC) but many images cross a threshold near the middle
    val = CxrTable(pd.DataFrame({"path": [f"{i}.png" for i in range(400)]}), np.stack([1 - labels, labels], 1), BINARY)
    c = _compare(BINARY, val, p32, p_low, {"pneumonia": 0.5})
    assert c["auroc_delta"] == 0.0 and c["decision_agreement"] < 0.99


def _bundle_and_val(tmp_path, n=48):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    paths, labels = [], []
    for i in range(n):
        y = i % 2
        img = rng.integers(0, 120, (32, 32)).astype(np.uint8) + (100 if y else 0)  # learnable by brightness
        p = tmp_path / f"{i}.png"
        Image.fromarray(img.astype(np.uint8)).save(p)
        paths.append(str(p))
        labels.append([1 - y, y])
    val = CxrTable(pd.DataFrame({"path": paths}), np.array(labels, np.float32), BINARY)
    model = create_model("small_cnn", BINARY, image_size=32, weights="none")
    prep = Preprocessing(image_size=32, mean=0.5, std=0.25)
    save_bundle(tmp_path / "b", model, "small_cnn", BINARY, prep, None, {}, {}, "toy")
    return load_bundle(tmp_path / "b"), val


def test_int8_check_quantizes_compares_and_the_engine_honours_it(tmp_path):
    bundle, val = _bundle_and_val(tmp_path)
    probs = Engine(bundle, InferenceOptions(device="cpu", precision="fp32", num_workers=0)).run_table(val)
    with pytest.raises(ConfigError, match="no INT8 check"):
        Engine(bundle, InferenceOptions(backend="onnx-int8"))
    out = tmp_path / INT8_FILE
    check = run_int8_check(bundle, val, probs, thresholds={"pneumonia": 0.5}, out=str(out), tolerance=1.0)
    assert check["ok"] is (check["decision_agreement"] >= 0.99), check
    assert {"auroc_fp32", "auroc_int8", "auroc_delta", "decision_agreement", "n"} <= set(check)
    bundle.extra["precision_check"] = {"int8": {**check, "ok": True}}
    if out.exists():  # kept only when it passed
        eng = Engine(bundle, InferenceOptions(backend="onnx-int8", onnx_path=str(out), num_workers=0))
        assert eng.precision == "int8"
        p8 = eng.run_table(val)
        assert np.abs(p8 - probs).max() < 0.1
    bundle.extra["precision_check"] = {"int8": {**check, "ok": False, "auroc_delta": 0.02}}
    with pytest.raises(ConfigError, match="INT8 is refused"):
        Engine(bundle, InferenceOptions(backend="onnx-int8", onnx_path=str(out)))
    config = json.loads((bundle.path / "config.json").read_text())
    config["extra"]["precision_check"] = bundle.extra["precision_check"]
    card = render_model_card(config)
    assert "INT8 check" in card and "INT8 is refused" in card
