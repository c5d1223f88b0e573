"""The inference engine: fp32/bf16 choice, table runs, ONNX export and backend."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from cxrkit.core.errors import BundleError, ConfigError, ImageDecodeError
from cxrkit.core.preprocess import Preprocessing
from cxrkit.core.task import LabelSpace, TaskType
from cxrkit.data.table import CxrTable
from cxrkit.models import create_model, load_bundle, logits_to_proba, save_bundle
from cxrkit.models import engine as engine_mod
from cxrkit.models.engine import Engine, InferenceOptions
from cxrkit.models.onnx_export import OnnxRunner, export_onnx, onnx_cache_path

BINARY = LabelSpace(TaskType.BINARY, ("normal", "pneumonia"))


def _bundle(path, space=BINARY, arch="tiny_cnn", extra=None):
    torch.manual_seed(0)
    model = create_model(arch, space, image_size=32, weights="none")
    save_bundle(
        path,
        model,
        arch,
        space,
        Preprocessing(image_size=32, mean=0.5, std=0.25),
        thresholds=None,
        metrics={},
        data_summary={},
        license="toy",
        extra=extra or {},
    )
    return load_bundle(path)


def _table(tmp_path, n=10, space=BINARY):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        p = tmp_path / f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, (40, 36), dtype=np.uint8)).save(p)
        paths.append(str(p))
    labels = np.zeros((n, len(space.classes)), np.float32)
    labels[np.arange(n), np.arange(n) % len(space.classes)] = 1
    return CxrTable(pd.DataFrame({"path": paths}), labels, space)


def test_options_are_validated():
    with pytest.raises(ConfigError, match="backend"):
        InferenceOptions(backend="tensorrt")
    with pytest.raises(ConfigError, match="precision"):
        InferenceOptions(precision="fp8")
    with pytest.raises(ConfigError, match="fp32"):
        InferenceOptions(backend="onnx", precision="bf16")


def test_auto_precision_needs_native_bf16_and_a_passed_check(tmp_path, monkeypatch):
    unchecked = _bundle(tmp_path / "a")
    passed = _bundle(tmp_path / "b", extra={"precision_check": {"bf16": {"ok": True}}})
    failed = _bundle(tmp_path / "c", extra={"precision_check": {"bf16": {"ok": False}}})
    monkeypatch.setattr(engine_mod, "native_bf16", lambda device: True)
    assert Engine(unchecked).precision == "fp32"
    assert Engine(passed).precision == "bf16"
    assert Engine(failed).precision == "fp32"
    assert Engine(passed, InferenceOptions(precision="fp32")).precision == "fp32"
    monkeypatch.setattr(engine_mod, "native_bf16", lambda device: False)
    assert Engine(passed).precision == "fp32"  # emulated bf16 is slower: never chosen automatically


@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel"])
def test_engine_matches_the_plain_model(tmp_path, task, label_spaces):
    space = label_spaces[task]
    bundle = _bundle(tmp_path / "b", space)
    x = torch.randn(4, 1, 32, 32)
    with torch.no_grad():
        expected = logits_to_proba(bundle.model(x), space).numpy()
    eng = Engine(bundle, InferenceOptions(precision="fp32"))
    np.testing.assert_allclose(eng.probabilities(x), expected, atol=1e-6)
    feats = eng.embeddings(x)
    assert feats.shape == (4, 128)
    bf16 = Engine(bundle, InferenceOptions(precision="bf16")).probabilities(x)
    assert np.abs(bf16 - expected).max() < 0.05  # bf16 keeps ~3 significant digits
    assert np.abs(bf16 - expected).max() > 0  # and really ran in bf16


def test_run_table_with_decode_workers(tmp_path):
    bundle = _bundle(tmp_path / "b")
    table = _table(tmp_path)
    serial = Engine(bundle, InferenceOptions(precision="fp32", num_workers=0, batch_size=3))
    parallel = Engine(bundle, InferenceOptions(precision="fp32", num_workers=2, batch_size=3))
    assert parallel.loader(table).num_workers == 2
    p0, e0 = serial.run_table(table, "both")
    p1, e1 = parallel.run_table(table, "both")
    assert p0.shape == (10, 1) and e0.shape == (10, 128)
    np.testing.assert_allclose(p0, p1, atol=1e-6)
    np.testing.assert_allclose(e0, e1, atol=1e-5)
    empty = serial.run_table(table.subset(np.zeros(10, bool)), "proba")
    assert empty.shape == (0, 1)


def test_run_table_names_an_unreadable_image_skips_it_and_reports_progress(tmp_path, caplog):
    bundle = _bundle(tmp_path / "b")
    table = _table(tmp_path, n=6)
    bad = tmp_path / "img4.png"
    bad.write_bytes(b"not an image")
    engine = Engine(bundle, InferenceOptions(precision="fp32", num_workers=2, batch_size=2))
    with pytest.raises(ImageDecodeError, match=r"img4\.png") as err:  # the message, not a worker's traceback
        engine.run_table(table)
    assert "Traceback" not in str(err.value)
    skipped: list = []
    with caplog.at_level(logging.INFO, logger="cxrkit.models.engine"):
        probs = engine.run_table(table, skipped=skipped, progress=True)
    assert probs.shape == (5, 1) and [s["row"] for s in skipped] == [4]
    assert any("inference: 6/6 img" in r.getMessage() for r in caplog.records)  # a log line off a terminal


def test_for_model_runs_a_model_that_is_not_saved(tmp_path):
    bundle = _bundle(tmp_path / "b")
    table = _table(tmp_path, n=4)
    engine = Engine.for_model(bundle.model, bundle.label_space, bundle.preprocessing, tta="hflip")
    assert engine.bundle is None and engine.precision == "fp32" and engine.tta == "hflip"
    want = Engine(bundle, InferenceOptions(precision="fp32")).run_table(table)
    flipped = Engine(bundle, InferenceOptions(precision="fp32"))
    assert not np.allclose(engine.run_table(table), want)  # the flip is averaged in
    flipped.tta = "hflip"
    np.testing.assert_allclose(engine.run_table(table), flipped.run_table(table), atol=1e-6)
    with pytest.raises(ConfigError, match="saved bundles"):
        Engine.for_model(
            bundle.model, bundle.label_space, bundle.preprocessing, options=InferenceOptions(backend="onnx")
        )


# Lite0's export takes ~10 s; the tiny CNN covers the path in the default run.
@pytest.mark.parametrize("arch", ["tiny_cnn", pytest.param("efficientnet_lite0", marks=pytest.mark.slow)])
def test_onnx_export_matches_torch(tmp_path, arch):
    bundle = _bundle(tmp_path / "b", arch=arch)
    info = export_onnx(bundle, tmp_path / "m.onnx")
    assert info["max_abs_diff_proba"] <= 1e-4
    runner = OnnxRunner(tmp_path / "m.onnx", expected_sha=bundle.fingerprint)
    assert runner.config["architecture"] == arch  # the bundle's config travels inside the file
    table = _table(tmp_path)
    torch_p, torch_e = Engine(bundle, InferenceOptions(precision="fp32", num_workers=0)).run_table(table, "both")
    onnx_eng = Engine(bundle, InferenceOptions(backend="onnx", onnx_path=str(tmp_path / "m.onnx"), num_workers=0))
    onnx_p, onnx_e = onnx_eng.run_table(table, "both")
    np.testing.assert_allclose(onnx_p, torch_p, atol=1e-4)
    np.testing.assert_allclose(onnx_e, torch_e, atol=1e-3, rtol=1e-4)
    assert onnx_eng.describe()["backend"] == "onnx"


def test_onnx_backend_exports_once_into_the_cache(tmp_path):
    bundle = _bundle(tmp_path / "b")
    Engine(bundle, InferenceOptions(backend="onnx"))
    cached = onnx_cache_path(bundle)
    assert cached.is_file()
    stamp = cached.stat().st_mtime_ns
    Engine(bundle, InferenceOptions(backend="onnx"))
    assert cached.stat().st_mtime_ns == stamp


def test_onnx_of_another_model_is_refused(tmp_path):
    a = _bundle(tmp_path / "a")
    export_onnx(a, tmp_path / "a.onnx")
    torch.manual_seed(1)
    other = create_model("tiny_cnn", BINARY, image_size=32)
    save_bundle(tmp_path / "o", other, "tiny_cnn", BINARY, Preprocessing(image_size=32), None, {}, {}, license="toy")
    b = load_bundle(tmp_path / "o")
    with pytest.raises(BundleError, match="another model"):
        Engine(b, InferenceOptions(backend="onnx", onnx_path=str(tmp_path / "a.onnx")))
    with pytest.raises(BundleError, match="cxr export"):
        OnnxRunner(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not onnx")
    with pytest.raises(BundleError, match="not a loadable"):
        OnnxRunner(tmp_path / "junk.onnx")


def test_cli_export_and_onnx_predict(tmp_path):
    from typer.testing import CliRunner

    from cxrkit.cli import app

    _bundle(tmp_path / "b")
    table = _table(tmp_path, n=2)
    runner = CliRunner()
    out = tmp_path / "x.onnx"
    res = runner.invoke(app, ["export", "--model", str(tmp_path / "b"), "--onnx", str(out), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["max_abs_diff_proba"] <= 1e-4 and out.is_file()
    assert oct(out.stat().st_mode & 0o777) != oct(0o600)  # published with the umask's mode, not mkstemp's
    args = ["predict", "--model", str(tmp_path / "b"), *table.frame["path"], "--json"]
    torch_res = json.loads(runner.invoke(app, args).stdout)
    onnx_res = json.loads(runner.invoke(app, [*args, "--backend", "onnx"]).stdout)
    assert onnx_res["model"]["backend"] == "onnx" and torch_res["model"]["backend"] == "torch"
    for a, b in zip(torch_res["predictions"], onnx_res["predictions"], strict=True):
        assert abs(a["probabilities"]["pneumonia"] - b["probabilities"]["pneumonia"]) < 1e-4
    bad = runner.invoke(app, [*args, "--backend", "tensorrt"])
    assert bad.exit_code == 2 and "Unknown backend" in bad.output
