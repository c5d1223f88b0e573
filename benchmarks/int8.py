"""CPU INT8 (ONNX Runtime static QDQ) vs ONNX fp32 for a shipped bundle: speed and the accuracy check (JSON).

    PYTHONPATH=src .venv/bin/python benchmarks/int8.py --model pneumonia \
        --data ../shared/data/kaggle-pneumonia/train [--size 224 --batch 32 --rounds 5]

- Accuracy: ``run_int8_check`` as ``cxr threshold`` runs it, at the bundle's own size: calibrated on (up to
  256 images of) the validation split, then every validation image through INT8 and fp32; validation
  AUROC within 0.005 and >= 99% of images with the same findings at the bundle's thresholds.
- Speed, in the same run: images/s at ``--size`` px, batch ``--batch``, of the fp32 export and of the
  INT8 model (calibrated on the same validation images at that size), alternating runs, best round each,
  with as many ONNX Runtime threads as torch uses (the engine's setting).
Target (issue 13): INT8 >= 1.5x fp32 at 224 px, batch 32, AUROC within 0.005.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="pneumonia")
    ap.add_argument("--data", nargs="*", help="the training data (default: the sources in the bundle's recipe)")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    from cxrkit.models import load_bundle
    from cxrkit.models.bundle import normalise_thresholds
    from cxrkit.models.engine import Engine, InferenceOptions
    from cxrkit.models.onnx_export import OnnxRunner, export_onnx
    from cxrkit.models.quantize import calibration_batches, quantize_onnx
    from cxrkit.training.data_prep import validation_split
    from cxrkit.training.precision import run_int8_check
    from cxrkit.training.recipe import DataSpec

    bundle = load_bundle(args.model)
    data = dict(bundle.extra["recipe"]["data"])
    if args.data:
        data["sources"] = args.data
    val = validation_split(DataSpec(**data), bundle.split_record())
    t0 = time.perf_counter()
    probs = Engine(bundle, InferenceOptions(precision="fp32")).run_table(val)
    thresholds = normalise_thresholds(bundle.thresholds or None, bundle.label_space)
    with tempfile.TemporaryDirectory() as tmp:
        check = run_int8_check(bundle, val, probs, thresholds=thresholds, out=str(Path(tmp) / "int8.onnx"))
        check["seconds"] = round(time.perf_counter() - t0, 1)
        fp32, int8 = Path(tmp) / f"fp32-{args.size}.onnx", Path(tmp) / f"int8-{args.size}.onnx"
        export_onnx(bundle, fp32, image_size=args.size)
        sized = dataclasses.replace(
            bundle, preprocessing=dataclasses.replace(bundle.preprocessing, image_size=args.size)
        )
        quantize_onnx(fp32, int8, calibration_batches(val, sized))
        runners = {"onnx_fp32": OnnxRunner(fp32), "onnx_int8": OnnxRunner(int8)}
        x = calibration_batches(val.subset(np.arange(min(len(val), args.batch))), sized, batch_size=args.batch)[0]
        best = dict.fromkeys(runners, 0.0)
        for r in runners.values():
            r.run(x)  # warm-up
        for _ in range(args.rounds):  # alternate, so a busy moment hurts both alike
            for name, r in runners.items():
                t = time.perf_counter()
                r.run(x)
                best[name] = max(best[name], len(x) / (time.perf_counter() - t))
    result = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
        "threads": torch.get_num_threads(),
        "model": args.model,
        "speed": {"size": args.size, "batch": len(x), **{k: round(v, 1) for k, v in best.items()}},
        "speedup_int8_vs_fp32": round(best["onnx_int8"] / best["onnx_fp32"], 2),
        "run_int8_check": check,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
