"""Cost of the X-ray augmentation per image (prints JSON): per image as in DataLoader workers, per batch.

    PYTHONPATH=src .venv/bin/python benchmarks/augment_speed.py --size 224 --batch 32 [--device cuda]

Measures the recipe's default augmentation (flip, affine, brightness, contrast) and the robust set of
recipes/robust_example.yaml (plus crop, gamma, CLAHE, blur, sharpen, noise, JPEG at p=0.3), in ms per image.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from cxrkit.data.augment import Augmentation

ROBUST = Augmentation(
    hflip=0.5, rotation=7, zoom=0.1, shift=0.05, crop=0.15, brightness=0.1, contrast=0.15,
    gamma=0.3, clahe=3.0, blur=1.0, sharpen=0.5, noise=0.02, jpeg=50, p=0.3,
)  # fmt: skip


def ms_per_image(aug: Augmentation, batch: int, size: int, device: str, repeats: int) -> float:
    pipeline = aug.build()
    x = torch.rand(batch, 1, size, size, device=device)
    pipeline(x)  # warm-up (kernels, caches)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(repeats):
        pipeline(x)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return round((time.perf_counter() - t) * 1000 / (repeats * batch), 3)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (a DataLoader worker uses 1)")
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    out: dict = {"size": a.size, "device": a.device, "threads": a.threads}
    for name, aug in (("default", Augmentation()), ("robust", ROBUST)):
        out[name] = {
            "per_image_ms": ms_per_image(aug, 1, a.size, a.device, a.repeats * 4),
            f"per_batch_{a.batch}_ms_per_image": ms_per_image(aug, a.batch, a.size, a.device, a.repeats),
        }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
