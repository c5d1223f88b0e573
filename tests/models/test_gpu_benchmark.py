"""benchmarks/gpu.py rehearsed on the CPU at tiny sizes: every measure runs and reports a figure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

import gpu  # noqa: E402
import gpu_measures as gm  # noqa: E402


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    folder = tmp_path_factory.mktemp("jpegs")
    small = [gpu._write_jpeg((str(folder / f"s{i}.jpg"), 32, i)) for i in range(6)]
    big = [gpu._write_jpeg((str(folder / f"b{i}.jpg"), 48, i)) for i in range(3)]
    return gm.Config(device="cpu", size=32, batch=4, train_batch=2, iters=1, rounds=1, latency_n=3, workers=1,
                     compile=False, jpeg_small=small, jpeg_big=big, table_rows=10, big_rows=5)  # fmt: skip


@pytest.mark.slow
def test_eager_child_measures_everything(cfg, tmp_path):
    rec = gm.Recorder(str(tmp_path / "eager.json"), "eager")
    gpu.eager_child(cfg, torch.device("cpu"), rec)
    data = json.loads((tmp_path / "eager.json").read_text())
    errors = {k: v["error"] for k, v in data.items() if isinstance(v, dict) and "error" in v}
    assert not errors
    assert data["model_only_eager:pneumonia"]["weights"] == "shipped bundle"
    assert data["model_only_eager:densenet121"]["fp32_cl_img_s"] > 0
    assert data["files_to_proba:pneumonia:device"]["rows"] == 10
    assert data["files_to_proba:densenet121:cpu"]["img_s"] > 0
    assert data["decode_only:224px"]["device_batched_img_s"] > 0
    assert data["batch1_eager:pneumonia"]["eager_fp32"]["p50_ms"] > 0
    assert data["train_eager:pneumonia"]["img_s"] > 0
    summary = gpu.summarize({"eager": data})
    assert summary["model_only_b256_img_s"]["path"] is not None
    assert summary["model_only_b256_img_s"]["densenet121_same_path"] > 0
    assert summary["batch1_predict_p50_ms"]["meets_target"] is not None


def test_compiled_children_measure_after_their_turn(cfg):
    turns = []
    dev = torch.device("cpu")
    b256 = gpu.compiled_b256("pneumonia", cfg, dev, lambda: turns.append("b256"))
    b1 = gpu.compiled_b1("densenet121", cfg, dev, lambda: turns.append("b1"), bf16=True)
    train = gpu.compiled_train("pneumonia", cfg, dev, lambda: turns.append("train"))
    assert turns == ["b256", "b1", "train"]
    assert b256["bf16_cl_compiled_img_s"] > 0 and b1["compiled_bf16"]["p50_ms"] > 0 and train["img_s"] > 0


def test_a_failing_measure_is_reported_not_fatal(tmp_path):
    rec = gm.Recorder(str(tmp_path / "r.json"), "t")
    rec.measure("boom", lambda: 1 / 0)
    rec.measure("fine", lambda: {"img_s": 1.0})
    data = json.loads((tmp_path / "r.json").read_text())
    assert "ZeroDivisionError" in data["boom"]["error"] and data["fine"]["img_s"] == 1.0


def test_summary_picks_the_best_path_and_densenet_on_the_same_one():
    children = {
        "eager": {"model_only_eager:pneumonia": {"fp32_cl_img_s": 10.0, "bf16_weights_cl_img_s": 20.0},
                  "model_only_eager:densenet121": {"fp32_cl_img_s": 4.0, "bf16_weights_cl_img_s": 5.0}},
        "b256:pneumonia": {"b256:pneumonia": {"bf16_cl_compiled_img_s": 40000.0}},
        "b256:densenet121": {"b256:densenet121": {"bf16_cl_compiled_img_s": 8000.0}},
    }  # fmt: skip
    row = gpu.summarize(children)["model_only_b256_img_s"]
    assert row["path"] == "bf16_cl_compiled_img_s" and row["pneumonia"] == 40000.0
    assert row["densenet121_same_path"] == 8000.0 and row["ratio_vs_densenet121"] == 5.0 and row["meets_target"]


@pytest.mark.slow
def test_the_script_runs_end_to_end_on_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    cmd = [sys.executable, str(BENCH / "gpu.py"), "--smoke", "--device", "cpu", "--no-compile", "--budget", "400"]
    cmd += ["--only", "b256:pneumonia", "engine", "--out", str(out)]
    subprocess.run(cmd, check=True, timeout=600)
    report = json.loads(out.read_text())
    assert report["children"]["b256:pneumonia"]["b256:pneumonia"]["bf16_cl_compiled_img_s"] > 0
    engine = report["children"]["engine"]["engine"]
    assert "error" not in engine, engine
    assert engine["files_to_proba_cpu_decode"]["img_s"] > 0


def test_gpu_run_needs_no_optional_libraries():
    """The GPU machine has torch/timm/numpy/pillow/pandas but not pydicom, grad-cam, faiss, OpenCV..."""
    blocked = ("pydicom", "pytorch_grad_cam", "faiss", "cv2", "sklearn", "scipy", "matplotlib", "typer", "rich",
               "fastapi", "sqlalchemy", "segmentation_models_pytorch", "albumentations", "openpyxl", "litdata")  # fmt: skip
    code = (
        "import sys\n"
        f"for m in {blocked!r}: sys.modules[m] = None\n"
        "import gpu, gpu_measures\n"
        "from cxrkit.models.bundle import load_bundle\n"
        "from cxrkit.models.engine import Engine, InferenceOptions\n"
        "import cxrkit.models.gpu_decode, cxrkit.data.table\n"
        "Engine(load_bundle('pneumonia'), InferenceOptions(device='cpu', compile=True))\n"
    )
    src = str(BENCH.parent / "src")
    env = {**__import__("os").environ, "PYTHONPATH": f"{src}:{BENCH}"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=240)
