"""`cxr segment` latency on one 1024 px chest X-ray (prints JSON): p50 / p95 in ms, target p50 <= 300 ms.

    .venv/bin/python benchmarks/segment.py [--model lungs] [--image X.png] [--n 20] [--threads 1]

Measured per image as `cxr segment` runs it: decode the file, segment (resize to the model's input,
U-Net forward, resize the probability map back to 1024 px, threshold, keep the two lungs), describe
(box, area) and write the mask and overlay PNGs. Also reported: the forward pass alone, and the one-off
start (imports + bundle load) that a `cxr segment` process pays once. The image defaults to an NIH
image of ../shared/data upscaled to 1024 x 1024 (NIH's original size), else a synthetic one.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from serving_latency import pick_model  # a shipped bundle, else runs/NAME/bundle (this folder is on sys.path)

ROOT = Path(__file__).resolve().parents[1]
TARGET_P50_MS = 300


def make_image(path: str | None, out: Path) -> Path:
    from PIL import Image

    if path:
        return Path(path)
    nih = ROOT.parent / "shared" / "data" / "nih-chestxray14-256" / "images"
    files = sorted(nih.glob("*.png")) if nih.is_dir() else []
    if files:
        img = Image.open(files[0]).convert("L").resize((1024, 1024), Image.Resampling.BICUBIC)
    else:
        rng = np.random.default_rng(0)
        img = Image.fromarray((rng.random((1024, 1024)) * 255).astype(np.uint8))
    target = out / "cxr_1024.png"
    img.save(target)
    return target


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="lungs")
    ap.add_argument("--image")
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (the server's default on 2 cores)")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    from cxrkit.io import read_image
    from cxrkit.models.segmentation import load_segmenter
    from cxrkit.serving.segment import segment_files

    segmenter = load_segmenter(pick_model(args.model))
    start_ms = 1000 * (time.perf_counter() - t0)
    with tempfile.TemporaryDirectory() as tmp:
        image = make_image(args.image, Path(tmp))
        segment_files([image], Path(tmp) / "warm", segmenter)  # oneDNN builds its kernels on the first call
        total, cpu, forward = [], [], []
        for i in range(args.n):
            t, c = time.perf_counter(), time.process_time()
            result = segment_files([image], Path(tmp) / f"o{i}", segmenter)
            total.append(1000 * (time.perf_counter() - t))
            cpu.append(1000 * (time.process_time() - c))
        img = read_image(image)
        for _ in range(args.n):
            t = time.perf_counter()
            segmenter.probabilities([img])
            forward.append(1000 * (time.perf_counter() - t))
    rec = result["images"][0]
    print(json.dumps({
        "image": str(args.image or "NIH image upscaled to 1024x1024"),
        "size": [rec["width"], rec["height"]],
        "model_input": segmenter.preprocessing.image_size,
        "threads": args.threads,
        "n": args.n,
        "segment_p50_ms": round(float(np.percentile(total, 50)), 1),
        "segment_p95_ms": round(float(np.percentile(total, 95)), 1),
        # CPU time of this process: what the wall time would be on an otherwise idle core
        "segment_cpu_p50_ms": round(float(np.percentile(cpu, 50)), 1),
        "probabilities_p50_ms": round(float(np.percentile(forward, 50)), 1),
        "start_ms": round(start_ms, 1),
        "target_p50_ms": TARGET_P50_MS,
        "meets_target": float(np.percentile(total, 50)) <= TARGET_P50_MS,
        "load_average_1min": round(os.getloadavg()[0], 1),
        "lung_fraction": rec["lung_fraction"],
        "cpu": platform.processor() or platform.machine(),
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
