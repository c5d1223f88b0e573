"""Segmentation metrics (Dice, IoU) on boolean masks, and a segmenter's evaluation on image/mask pairs.

Per image: Dice = 2|P∩T| / (|P|+|T|), IoU = |P∩T| / |P∪T|; both are 1 when prediction and target are
empty (a lateral view correctly left blank). Means are over images (each image counts once, as in
the segmentation literature), reported separately for images whose target has lungs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from cxrkit.models.segmentation import Segmenter


def dice_iou(pred: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """Dice and IoU of one boolean prediction against one boolean target of the same shape."""
    pred, target = np.asarray(pred, bool), np.asarray(target, bool)
    if pred.shape != target.shape:
        raise ValueError(f"prediction {pred.shape} and target {target.shape} differ in shape")
    inter = float(np.logical_and(pred, target).sum())
    total = float(pred.sum() + target.sum())
    union = total - inter
    if total == 0:
        return 1.0, 1.0
    return 2 * inter / total, inter / union


def segmentation_metrics(preds: Sequence[np.ndarray], targets: Sequence[np.ndarray]) -> dict[str, Any]:
    """Mean per-image Dice/IoU over all images and over images whose target is not empty.

    Also ``empty_correct``: of the images with an empty target (lateral views), the fraction whose
    prediction is (almost) empty too (under 3% of the image).
    """
    scores = np.array([dice_iou(p, t) for p, t in zip(preds, targets, strict=True)]).reshape(-1, 2)
    has = np.array([np.asarray(t).any() for t in targets], bool)
    empty_ok = [float(np.mean(p)) < 0.03 for p, t in zip(preds, targets, strict=True) if not np.asarray(t).any()]
    out: dict[str, Any] = {
        "n": len(scores),
        "n_with_lungs": int(has.sum()),
        "dice": float(scores[:, 0].mean()) if len(scores) else float("nan"),
        "iou": float(scores[:, 1].mean()) if len(scores) else float("nan"),
        "dice_lungs": float(scores[has, 0].mean()) if has.any() else float("nan"),
        "iou_lungs": float(scores[has, 1].mean()) if has.any() else float("nan"),
        "dice_lungs_min": float(scores[has, 0].min()) if has.any() else float("nan"),
        "empty_correct": float(np.mean(empty_ok)) if empty_ok else float("nan"),
    }
    return out


def evaluate_segmenter(segmenter: Segmenter, pairs: pd.DataFrame, batch_size: int = 16) -> dict[str, Any]:
    """Dice/IoU of ``segmenter`` on the ``image``/``mask`` rows of ``pairs``, at each mask's own size."""
    from cxrkit.data.segmentation import read_mask
    from cxrkit.io import read_image

    preds, targets = [], []
    rows = list(pairs[["image", "mask"]].itertuples(index=False))
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        images = [read_image(r.image) for r in chunk]
        targets += [read_mask(r.mask, im.shape) for r, im in zip(chunk, images, strict=True)]
        preds += segmenter.masks(images, batch_size=batch_size)
    return segmentation_metrics(preds, targets)
