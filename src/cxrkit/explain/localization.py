"""Scoring how well a map localises a finding against ground-truth boxes (pure functions).

The NIH ChestX-ray14 release has ``BBox_List_2017.csv``: about 1,000 boxes drawn by radiologists on
the 1024 x 1024 originals, with columns ``Image Index``, ``Finding Label``, ``Bbox [x``, ``y``,
``w``, ``h]``. Two scores are standard: the pointing game (Zhang et al. 2016: is the map's maximum
inside a box of the finding) and the IoU between the best predicted box and the ground truth.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cxrkit.core.errors import DataFormatError

NIH_ORIGINAL_SIZE = 1024
Box = Mapping[str, Any]  # {"x", "y", "w", "h", ...}: x = left column, y = top row


def read_nih_boxes(path: str | Path) -> dict[str, list[dict[str, Any]]]:
    """Ground-truth boxes of an NIH-style CSV, by image file name.

    Columns are read by position (image, finding, x, y, w, h): the official header splits
    ``Bbox [x,y,w,h]`` over four columns, re-saved copies often merge it into one.

    Returns:
        ``{image_name: [{"finding", "x", "y", "w", "h"}, ...]}`` in the CSV's (1024 px) coordinates.

    Raises:
        DataFormatError: missing file, no rows, or a row whose box is not four numbers.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"{path}: no such box file (expected NIH BBox_List_2017.csv format).")
    out: dict[str, list[dict[str, Any]]] = {}
    with path.open(newline="", encoding="utf-8-sig") as f:
        rows = csv.reader(f)
        header = next(rows, None)
        if not header or len(header) < 2 or "image" not in header[0].lower():
            raise DataFormatError(
                f"{path}: expected a header starting 'Image Index,Finding Label,Bbox [x,y,w,h]', got {header}."
            )
        for line, row in enumerate(rows, start=2):
            if not row or not row[0].strip():
                continue
            try:
                x, y, w, h = (float(v) for v in row[2:6])
            except ValueError:
                raise DataFormatError(f"{path}, line {line}: box {row[2:6]} is not four numbers x,y,w,h.") from None
            out.setdefault(row[0].strip(), []).append({"finding": row[1].strip(), "x": x, "y": y, "w": w, "h": h})
    if not out:
        raise DataFormatError(f"{path}: no boxes found.")
    return out


def scale_box(box: Box, image_shape: tuple[int, int], original_size: tuple[int, int] | int = NIH_ORIGINAL_SIZE) -> dict:
    """A box drawn on an ``original_size`` (H, W) image, in the pixels of an ``image_shape`` (H, W) copy."""
    oh, ow = (original_size, original_size) if isinstance(original_size, int) else original_size
    sy, sx = image_shape[0] / oh, image_shape[1] / ow
    return {**box, "x": box["x"] * sx, "y": box["y"] * sy, "w": box["w"] * sx, "h": box["h"] * sy}


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two ``{x, y, w, h}`` boxes (0 when either is empty)."""
    ix = max(0.0, min(a["x"] + a["w"], b["x"] + b["w"]) - max(a["x"], b["x"]))
    iy = max(0.0, min(a["y"] + a["h"], b["y"] + b["h"]) - max(a["y"], b["y"]))
    inter = ix * iy
    union = a["w"] * a["h"] + b["w"] * b["h"] - inter
    return float(inter / union) if union > 0 else 0.0


def peak_location(cam: np.ndarray) -> tuple[int, int]:
    """(row, col) of the map's maximum (the first one in row-major order on ties)."""
    cam = np.nan_to_num(np.asarray(cam, dtype=np.float32), nan=-np.inf)
    r, c = np.unravel_index(int(np.argmax(cam)), cam.shape)
    return int(r), int(c)


def pointing_hit(cam: np.ndarray, gt_boxes: Iterable[Box], tolerance: float = 0.0) -> bool:
    """Pointing game: is the centre of the map's maximum pixel within ``tolerance`` pixels of a box.

    A uniform map (no maximum to point with) is a miss.
    """
    cam = np.asarray(cam, dtype=np.float32)
    if cam.size == 0 or float(np.nanmax(cam)) <= float(np.nanmin(cam)):
        return False
    r, c = peak_location(cam)
    py, px = r + 0.5, c + 0.5
    for b in gt_boxes:
        dx = max(b["x"] - px, 0.0, px - (b["x"] + b["w"]))
        dy = max(b["y"] - py, 0.0, py - (b["y"] + b["h"]))
        if (dx * dx + dy * dy) ** 0.5 <= tolerance:
            return True
    return False


def best_box_iou(pred_boxes: Sequence[Box], gt_boxes: Sequence[Box]) -> float:
    """IoU of the best predicted box (the first: ``cam_to_boxes`` sorts by score) with the closest GT box."""
    if not pred_boxes or not gt_boxes:
        return 0.0
    return max(box_iou(pred_boxes[0], g) for g in gt_boxes)


def score_localization(
    cam: np.ndarray, pred_boxes: Sequence[Box], gt_boxes: Sequence[Box], tolerance: float = 0.0
) -> dict[str, Any]:
    """Pointing-game hit and best-box IoU of one map against its ground-truth boxes (same pixel grid)."""
    return {"hit": pointing_hit(cam, gt_boxes, tolerance), "iou": best_box_iou(pred_boxes, gt_boxes)}


def summarize_localization(scores: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Hit rate and mean IoU over per-image scores (each ``{"hit", "iou"}``, optionally ``"finding"``).

    Returns:
        ``{"n", "hit_rate", "mean_iou", "per_finding": {finding: {n, hit_rate, mean_iou}}}``; rates are
        None when there is nothing to score.
    """
    scores = list(scores)

    def agg(items: list[Mapping[str, Any]]) -> dict[str, Any]:
        n = len(items)
        return {
            "n": n,
            "hit_rate": float(np.mean([bool(s["hit"]) for s in items])) if n else None,
            "mean_iou": float(np.mean([float(s["iou"]) for s in items])) if n else None,
        }

    per: dict[str, list[Mapping[str, Any]]] = {}
    for s in scores:
        if s.get("finding"):
            per.setdefault(str(s["finding"]), []).append(s)
    return {**agg(scores), "per_finding": {k: agg(v) for k, v in sorted(per.items())}}
