"""Tiny generated lung segmentation data and constant segmenters, shared by the segmentation tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cxrkit.core.preprocess import Preprocessing


def synthetic_cxr(size: int = 64, seed: int = 0, lungs: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """A grey "body" with two dark elliptical "lungs" (uint8 image, bool mask); lungs=False: no lungs."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = np.full((size, size), 0.15) + 0.55 * ((xx > 0.1) & (xx < 0.9))
    mask = np.zeros((size, size), bool)
    if lungs:
        cy, ry, rx = 0.5 + rng.uniform(-0.05, 0.05), rng.uniform(0.25, 0.32), rng.uniform(0.12, 0.16)
        for cx in (0.3 + rng.uniform(-0.03, 0.03), 0.7 + rng.uniform(-0.03, 0.03)):
            mask |= ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1
    img = np.where(mask, 0.25, img) + rng.normal(0, 0.03, (size, size))
    return (np.clip(img, 0, 1) * 255).astype(np.uint8), mask


def write_pairs(root: Path, n: int = 24, size: int = 64, lateral_every: int = 8) -> Path:
    """A masks.csv folder of ``n`` image/mask pairs, 2 images per patient, every ``lateral_every``-th without lungs."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    lines = ["mask,image,patient_id,view,lung_fraction"]
    for i in range(n):
        lateral = i % lateral_every == lateral_every - 1
        img, mask = synthetic_cxr(size, seed=i, lungs=not lateral)
        Image.fromarray(img).save(root / "images" / f"im{i}.png")
        Image.fromarray(mask.astype(np.uint8) * 255).save(root / "masks" / f"im{i}.png")
        lines.append(f"masks/im{i}.png,images/im{i}.png,p{i // 2},{'L' if lateral else 'PA'},{mask.mean():.4f}")
    (root / "masks.csv").write_text("\n".join(lines) + "\n")
    return root


def constant_segmenter(path: Path, logit: float, image_size: int = 32) -> Path:
    """A segmentation bundle whose output is ``logit`` everywhere (+: all lung, -: no lungs)."""
    from cxrkit.models.segmentation import create_segmenter, save_segmenter

    model = create_segmenter(weights="none")
    head = model.segmentation_head[0]
    with torch.no_grad():
        head.weight.zero_()
        head.bias.fill_(logit)
    prep = Preprocessing(image_size=image_size, mean=0.5, std=0.5, in_chans=1)
    return save_segmenter(path, model, "unet_efficientnet_lite0", prep, 0.5, {}, {"source": "test"}, "test")
