"""A fair CPU comparison: each model on each path, and DenseNet-121 on the same best path (prints JSON).

    PYTHONPATH=src .venv/bin/python benchmarks/cpu_fair.py [--size 224 --batch 32 --rounds 4]

Paths, at ``--size`` px and batch ``--batch`` on preprocessed tensors (decoding is not part of it):
PyTorch fp32 NCHW (how torchxrayvision runs DenseNet-121), PyTorch fp32 channels-last, PyTorch bf16
autocast channels-last, ONNX Runtime fp32, ONNX Runtime INT8 (static QDQ; calibrated on random inputs
here, which sets the speed, not the accuracy: the accuracy check is ``benchmarks/int8.py``).
Models: the shipped ``pneumonia`` (EfficientNet-Lite0) and DenseNet-121 (timm, random weights, 1 channel,
18 outputs as torchxrayvision builds it). Rounds alternate over all runs; the best round of each is kept.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch


def export(model: torch.nn.Module, path: Path, size: int) -> None:
    example = torch.rand(2, 1, size, size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model.eval().to(memory_format=torch.contiguous_format),
            (example,),
            dynamo=True,
            input_names=["image"],
            dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
            verbose=False,
        )
    program.save(str(path))


def runs_for(name: str, model: torch.nn.Module, tmp: Path, size: int, batch: int) -> dict[str, Any]:
    import onnxruntime as ort

    from cxrkit.models.quantize import quantize_onnx

    x = torch.rand(batch, 1, size, size) * 2 - 1
    fp32, int8 = tmp / f"{name}.onnx", tmp / f"{name}.int8.onnx"
    export(model, fp32, size)
    rng = np.random.default_rng(0)
    quantize_onnx(fp32, int8, [rng.random((8, 1, size, size), dtype=np.float32) * 2 - 1 for _ in range(4)])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    sessions = {k: ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"]) for k, p in
                (("onnx_fp32", fp32), ("onnx_int8", int8))}  # fmt: skip
    nchw = model.eval().to(memory_format=torch.contiguous_format)
    import copy

    cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
    xc = x.contiguous(memory_format=torch.channels_last)
    xn = x.numpy()

    def bf16() -> Any:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return cl(xc)

    return {
        "torch_fp32_nchw": lambda: nchw(x),
        "torch_fp32_channels_last": lambda: cl(xc),
        "torch_bf16_channels_last": bf16,
        **{k: (lambda s=s: s.run(None, {"image": xn})) for k, s in sessions.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=4)
    args = ap.parse_args()
    import timm

    from cxrkit.models import load_bundle

    models = {
        "pneumonia": load_bundle("pneumonia").model,
        "densenet121": timm.create_model("densenet121", pretrained=False, in_chans=1, num_classes=18),
    }
    best: dict[str, dict[str, float]] = {m: {} for m in models}
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        runs = {m: runs_for(m, model, Path(tmp), args.size, args.batch) for m, model in models.items()}
        for m in runs:
            for fn in runs[m].values():
                fn()  # warm-up
        for _ in range(args.rounds):
            for m, fns in runs.items():
                for path, fn in fns.items():
                    t0 = time.perf_counter()
                    fn()
                    rate = args.batch / (time.perf_counter() - t0)
                    best[m][path] = round(max(best[m].get(path, 0.0), rate), 1)
    pn, dn = best["pneumonia"], best["densenet121"]
    path = max(pn, key=pn.get)
    dn_best = max(dn, key=dn.get)
    print(json.dumps({
        "cores": os.cpu_count(), "threads": torch.get_num_threads(), "size": args.size, "batch": args.batch,
        "images_per_s": best,
        "pneumonia_best_path": path,
        "fair_ratio_same_path": round(pn[path] / dn[path], 2),
        "fair_ratio_each_best": {"densenet121_best_path": dn_best, "ratio": round(pn[path] / dn[dn_best], 2)},
        "ratio_vs_densenet121_as_torchxrayvision_runs_it": round(pn[path] / dn["torch_fp32_nchw"], 2),
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
