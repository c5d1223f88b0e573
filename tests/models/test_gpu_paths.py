"""The engine's GPU paths that can be checked on a CPU: nvJPEG-path preprocessing, padding, compile."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from cxrkit.core.errors import ConfigError
from cxrkit.core.preprocess import Preprocessing
from cxrkit.core.task import LabelSpace, TaskType
from cxrkit.data.images import load_image
from cxrkit.data.table import CxrTable
from cxrkit.data.transforms import ImageTransform
from cxrkit.models import create_model, load_bundle, save_bundle
from cxrkit.models.engine import Engine, InferenceOptions
from cxrkit.models.gpu_decode import bytes_loader, preprocess_on_device

BINARY = LabelSpace(TaskType.BINARY, ("normal", "pneumonia"))


def _files(tmp_path):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:60, 0:50]
    paths = []
    for i in range(5):
        gray = ((yy * 3 + xx * 2 + rng.integers(0, 20, yy.shape)) % 256).astype(np.uint8)
        if i == 1:  # a colour JPEG, decoded to luma on both paths
            img = Image.fromarray(np.stack([gray, 255 - gray, gray // 2], -1))
        else:
            img = Image.fromarray(gray if i != 3 else gray[:40])  # another size in the same batch
        p = tmp_path / (f"{i}.png" if i == 4 else f"{i}.jpg")
        img.save(p, quality=95) if p.suffix == ".jpg" else img.save(p)
        paths.append(str(p))
    labels = np.zeros((len(paths), 2), np.float32)
    return CxrTable(pd.DataFrame({"path": paths}), labels, BINARY)


@pytest.mark.parametrize("prep", [Preprocessing(image_size=32, mean=0.5, std=0.25),
                                  Preprocessing(image_size=24, resize="letterbox", in_chans=3)])  # fmt: skip
def test_device_preprocessing_matches_the_cpu_path(tmp_path, prep):
    table = _files(tmp_path)
    items = next(iter(bytes_loader(table, prep, batch_size=8, num_workers=0)))
    assert [it[1] is not None for it in items] == [True, True, True, True, False]  # JPEG bytes, PNG decoded
    got = preprocess_on_device(items, prep, torch.device("cpu"))
    want = torch.stack([ImageTransform(prep)(load_image(p)) for p in table.frame["path"]])
    assert got.shape == want.shape == (5, prep.in_chans, prep.image_size, prep.image_size)
    # libjpeg (CPU) vs PIL: the same decoder family; the bound is a couple of grey levels after scaling
    assert (got - want).abs().max().item() * prep.std < 3 / 255


def test_a_corrupt_jpeg_falls_back_to_the_clear_cpu_error(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff" + b"\x00" * 50)
    table = CxrTable(pd.DataFrame({"path": [str(bad)]}), np.zeros((1, 2), np.float32), BINARY)
    prep = Preprocessing(image_size=16)
    items = next(iter(bytes_loader(table, prep, batch_size=1, num_workers=0)))
    with pytest.raises(Exception, match=r"bad\.jpg"):
        preprocess_on_device(items, prep, torch.device("cpu"))


def _bundle(path, extra=None):
    torch.manual_seed(0)
    model = create_model("tiny_cnn", BINARY, image_size=32, weights="none")
    prep = Preprocessing(image_size=32, mean=0.5, std=0.25)
    save_bundle(path, model, "tiny_cnn", BINARY, prep, None, {}, {}, "toy", extra=extra or {})
    return load_bundle(path)


def test_new_options_are_validated():
    with pytest.raises(ConfigError, match="decode"):
        InferenceOptions(decode="nvdec")
    with pytest.raises(ConfigError, match="compile"):
        InferenceOptions(backend="onnx", compile=True)


def test_cpu_engine_decodes_on_the_cpu_and_pads_to_fixed_shapes(tmp_path):
    eng = Engine(_bundle(tmp_path / "b"), InferenceOptions(device="cpu", batch_size=32, decode="gpu"))
    assert eng.decoder == "cpu" and eng.describe()["decode"] == "cpu"
    assert [eng._padded_size(n) for n in (1, 2, 3, 5, 8, 9, 32, 40)] == [1, 2, 4, 8, 8, 32, 32, 40]


def test_auto_decode_stays_on_cpu_workers_on_a_gpu(tmp_path):
    # Measured on an H200: CPU workers fed the model 5.1k img/s, nvJPEG 2.4k (PERFORMANCE.md): GPU decode is opt-in.
    eng = Engine(_bundle(tmp_path / "b"), InferenceOptions(device="cpu"))
    eng.device = torch.device("cuda")  # as on a GPU machine; no GPU is touched
    assert eng.options.decode == "auto" and eng.decoder == "cpu"


def test_eager_bf16_is_skipped_for_small_gpu_batches(tmp_path):
    ok = {"precision_check": {"bf16": {"ok": True}}}
    eng = Engine(_bundle(tmp_path / "b", extra=ok), InferenceOptions(device="cpu"))
    eng.precision, eng.device = "bf16", torch.device("cuda")  # as picked on a GPU; no GPU is touched
    assert not eng._bf16_for(1) and eng._bf16_for(64)


@pytest.mark.slow
def test_compiled_engine_matches_eager(tmp_path):
    bundle = _bundle(tmp_path / "b")
    x = torch.rand(5, 1, 32, 32)
    eager = Engine(bundle, InferenceOptions(device="cpu", precision="fp32")).probabilities(x)
    eng = Engine(bundle, InferenceOptions(device="cpu", precision="fp32", compile=True, batch_size=8))
    eng.warmup()
    got = eng.probabilities(x)
    assert got.shape == (5, 1) and np.allclose(got, eager, atol=1e-5)
    assert eng.describe()["compile"] is True
