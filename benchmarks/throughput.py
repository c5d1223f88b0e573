"""Inference and training throughput (prints JSON), all in one run so the figures compare.

    .venv/bin/python benchmarks/throughput.py [--models pneumonia covid3 nih14 pneumoniamnist] [--batches 6]

- Batch throughput (images/s) at batch 32 and 224 px of every shipped model through cxrkit's engine:
  ``fp32`` (channels-last), ``auto`` (bf16 where native and the bundle passed its bf16 check), ``onnx``
  (ONNX Runtime); and of DenseNet-121 at 224 px, torchxrayvision's default architecture (random weights,
  speed does not depend on them) run as torchxrayvision runs it (fp32, NCHW), and on cxrkit's fast path.
  Inputs are preprocessed tensors: this measures the model, decoding is measured separately below.
- End-to-end table throughput of ``pneumonia`` from image files (decode in DataLoader workers + model),
  where ``../shared/data/kaggle-pneumonia`` exists.
- Single-image latency (p50/p95 ms) of predict and of predict + Grad-CAM heatmap, from a decoded image.
- Training images/s of EfficientNet-Lite0 (forward + backward + AdamW step, batch 32) at 224 px and at
  the shipped ``pneumonia`` model's own size.
Target (issue 6): ``pneumonia`` >= 8x DenseNet-121's images/s, and single-image predict p50 <= 100 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "kaggle-pneumonia" / "train"


def images_per_second(fn, x: torch.Tensor, batches: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn(x)
    t0 = time.perf_counter()
    for _ in range(batches):
        fn(x)
    return round(batches * len(x) / (time.perf_counter() - t0), 1)


def percentiles(times_s: list[float]) -> dict[str, float]:
    t = np.asarray(times_s) * 1000
    return {"p50_ms": round(float(np.percentile(t, 50)), 1), "p95_ms": round(float(np.percentile(t, 95)), 1)}


def bundle_throughput(name: str, size: int, batch: int, batches: int) -> dict[str, Any]:
    from cxrkit.models import load_bundle, resolve_bundle
    from cxrkit.models.engine import Engine, InferenceOptions, recorded_bf16_check
    from cxrkit.models.onnx_export import OnnxRunner, export_onnx

    bundle = load_bundle(resolve_bundle(name))
    x = torch.rand(batch, bundle.preprocessing.in_chans, size, size) * 2 - 1
    out: dict[str, Any] = {"architecture": bundle.architecture, "native_size": bundle.preprocessing.image_size}
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / f"{name}-{size}.onnx"
        export_onnx(bundle, onnx_path, image_size=size)  # the benchmark size, not the bundle's
        runner = OnnxRunner(onnx_path, expected_sha=bundle.fingerprint)
        out["onnx_img_s"] = images_per_second(lambda t: runner.run(t.numpy()), x, batches)
    for label, opts in (("fp32", InferenceOptions(precision="fp32")), ("auto", InferenceOptions(precision="auto"))):
        eng = Engine(bundle, opts)
        out[f"{label}_img_s"] = images_per_second(eng.probabilities, x, batches)
        if label == "auto":
            out["auto_precision"] = eng.precision
    out["bf16_check"] = recorded_bf16_check(bundle)
    return out


def densenet_throughput(size: int, batch: int, batches: int) -> dict[str, Any]:
    import timm

    model = timm.create_model("densenet121", pretrained=False, in_chans=1, num_classes=18).eval()
    x = torch.rand(batch, 1, size, size)

    @torch.inference_mode()
    def plain(inp: torch.Tensor) -> torch.Tensor:
        return model(inp)

    out = {"fp32_nchw_img_s": images_per_second(plain, x, batches)}
    model.to(memory_format=torch.channels_last)
    xc = x.contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def fast(inp: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return model(inp)

    out["bf16_channels_last_img_s"] = images_per_second(fast, xc, batches)
    return out


def table_throughput(name: str, n: int) -> dict[str, Any] | None:
    if not DATA.is_dir():
        return None
    from cxrkit.data import load_dataset
    from cxrkit.models import load_bundle, resolve_bundle
    from cxrkit.models.engine import Engine, InferenceOptions, default_workers

    table = load_dataset(DATA)
    table = table.subset(np.random.default_rng(0).choice(len(table), n, replace=False))
    bundle = load_bundle(resolve_bundle(name))
    eng = Engine(bundle, InferenceOptions(batch_size=32))
    eng.run_table(table.subset(np.arange(32)), "proba")  # warm-up
    t0 = time.perf_counter()
    eng.run_table(table, "proba")
    return {
        "images": n,
        "workers": default_workers(),
        "precision": eng.precision,
        "img_s": round(n / (time.perf_counter() - t0), 1),
    }


def single_image_latency(name: str, n: int) -> dict[str, Any]:
    from cxrkit.serving.predictor import Predictor

    predictor = Predictor.load(name)
    rng = np.random.default_rng(0)
    image = np.clip(rng.normal(0.5, 0.2, (1024, 1024)), 0, 1).astype(np.float32)  # a typical decoded CXR size
    for _ in range(3):
        predictor.predict_arrays([image])
        predictor.explain(image)
    predict, heatmap = [], []
    for _ in range(n):
        t0 = time.perf_counter()
        predictor.predict_arrays([image])
        predict.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        predictor.predict_arrays([image])
        predictor.explain(image)
        heatmap.append(time.perf_counter() - t0)
    return {
        "precision": predictor.engine.precision,
        "predict": percentiles(predict),
        "predict_heatmap": percentiles(heatmap),
    }


def training_throughput(size: int, batch: int, steps: int) -> float:
    from cxrkit.core.task import LabelSpace, TaskType
    from cxrkit.models import create_model

    space = LabelSpace(TaskType.BINARY, ("normal", "pneumonia"))
    model = create_model("efficientnet_lite0", space, weights="none").train().to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = (torch.rand(batch, 1, size, size) * 2 - 1).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 2, (batch, 1)).float()

    def step(inp: torch.Tensor) -> None:
        opt.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(model(inp), y).backward()
        opt.step()

    return images_per_second(step, x, steps, warmup=1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=["pneumonia", "covid3", "nih14", "pneumoniamnist"])
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--batches", type=int, default=6, help="timed batches per setting (after 2 warm-up)")
    ap.add_argument("--latency-n", type=int, default=30)
    ap.add_argument("--table-images", type=int, default=320)
    ap.add_argument("--train-steps", type=int, default=3)
    args = ap.parse_args()
    from cxrkit.core.errors import CxrkitError
    from cxrkit.models import resolve_bundle

    models = []
    for m in args.models:
        try:
            resolve_bundle(m)
            models.append(m)
        except CxrkitError:
            print(json.dumps({"skipped": m, "why": "not shipped or installed"}))
    result: dict[str, Any] = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "batch": args.batch,
        "size": args.size,
        "densenet121": densenet_throughput(args.size, args.batch, args.batches),
        "models": {m: bundle_throughput(m, args.size, args.batch, args.batches) for m in models},
    }
    dn = result["densenet121"]["fp32_nchw_img_s"]
    for r in result["models"].values():
        r["speedup_vs_densenet121"] = round(max(r["auto_img_s"], r["onnx_img_s"]) / dn, 1)
    if "pneumonia" in models:
        result["pneumonia_from_files"] = table_throughput("pneumonia", args.table_images)
        result["pneumonia_single_image"] = single_image_latency("pneumonia", args.latency_n)
        native = result["models"]["pneumonia"]["native_size"]
        result["training_img_s"] = {
            f"efficientnet_lite0@{s}": training_throughput(s, args.batch, args.train_steps)
            for s in sorted({args.size, native})
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
