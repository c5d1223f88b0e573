"""Explain image files and write the results: overlay PNG, raw map (.npy) and boxes (JSON) per image."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cxrkit.core.errors import UnknownNameError
from cxrkit.core.files import atomic_path, atomic_write_text
from cxrkit.explain.cam import CamResult, compute_cams, default_engine, normalise_method
from cxrkit.explain.localization import scale_box, score_localization, summarize_localization
from cxrkit.explain.overlay import overlay
from cxrkit.io import read_image
from cxrkit.models.bundle import Bundle
from cxrkit.models.engine import Engine

log = logging.getLogger(__name__)


def output_stems(paths: Sequence[Path]) -> list[str]:
    """File stems for the outputs, made unique ('a', 'a-2', ...) when two inputs share one."""
    seen: dict[str, int] = {}
    stems = []
    for p in paths:
        stem = Path(p).stem
        n = seen.get(stem, 0) + 1
        seen[stem] = n
        stems.append(stem if n == 1 else f"{stem}-{n}")
    return stems


def write_result(out_dir: Path, stem: str, image: np.ndarray, result: CamResult, info: Mapping[str, Any]) -> dict:
    """Write ``<stem>_cam.png``, ``<stem>_cam.npy`` and ``<stem>_boxes.json`` atomically; return their paths."""
    png, npy, boxes = out_dir / f"{stem}_cam.png", out_dir / f"{stem}_cam.npy", out_dir / f"{stem}_boxes.json"
    rgb = overlay(image, result.cam, f"{result.target} {result.probability:.2f}")
    with atomic_path(png) as tmp:
        Image.fromarray(rgb).save(tmp, format="PNG")
    with atomic_path(npy) as tmp, open(tmp, "wb") as f:
        np.save(f, result.cam.astype(np.float32))
    atomic_write_text(boxes, json.dumps({**info, "boxes": result.boxes}, indent=2) + "\n")
    return {"overlay": str(png), "map": str(npy), "boxes_file": str(boxes)}


# The NIH box list names a finding differently from the NIH labels (Data_Entry_2017.csv).
FINDING_ALIASES = {"infiltrate": "infiltration"}


def _model_class(bundle: Bundle, finding: str) -> str | None:
    for name in (finding, FINDING_ALIASES.get(finding.lower(), "")):
        if not name:
            continue
        try:
            return bundle.label_space.classes[bundle.label_space.index(name)]
        except UnknownNameError:
            pass
    return None


def _gt_target(bundle: Bundle, gt: list[dict[str, Any]] | None) -> tuple[str | None, list[dict[str, Any]]]:
    """The first ground-truth finding the model has a class for, and that finding's boxes."""
    for row in gt or []:
        cls = _model_class(bundle, row["finding"])
        if cls is not None:
            return cls, [b for b in gt if _model_class(bundle, b["finding"]) == cls]
    return None, []


def explain_files(
    bundle: Bundle,
    paths: Sequence[str | Path],
    out_dir: str | Path,
    method: str = "gradcam",
    target: str | None = None,
    batch_size: int = 8,
    gt_boxes: Mapping[str, list[dict[str, Any]]] | None = None,
    gt_original_size: int = 1024,
    engine: Engine | None = None,
) -> dict[str, Any]:
    """Explain image files with a bundle and write three files per image into ``out_dir``.

    Args:
        bundle: the model.
        paths: image files (decoded with ``cxrkit.io.read_image``; a bad file raises ImageDecodeError).
        out_dir: created if needed; existing outputs of the same names are replaced.
        method, target, batch_size: as in ``compute_cams``.
        gt_boxes: ground truth by file name (``read_nih_boxes``), in ``gt_original_size`` pixels. An image
            with boxes of a finding the model knows is explained for that finding (overriding
            ``target``) and scored: pointing game and IoU of the best predicted box.
        gt_original_size: side of the images the boxes were drawn on (NIH: 1024).
        engine: the bundle's ``Engine`` (its backend and precision give the probabilities; see ``compute_cams``).

    Returns:
        ``{"method", "images": [{path, target, probability, overlay, map, boxes, ...}],
        "localization": {...}}`` (``localization`` only when ``gt_boxes`` is given).
    """
    method = normalise_method(method)
    engine = engine or default_engine(bundle)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [Path(p) for p in paths]
    stems = output_stems(paths)
    records: list[dict[str, Any]] = []
    scores: list[dict[str, Any]] = []
    skipped = 0
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        images = [read_image(p) for p in chunk]
        plan = [_gt_target(bundle, (gt_boxes or {}).get(p.name)) for p in chunk]
        targets = [t if t is not None else target for t, _ in plan]
        results = compute_cams(bundle, images, method=method, target=targets, batch_size=batch_size, engine=engine)
        for i, (path, image, result, (gt_cls, gt)) in enumerate(zip(chunk, images, results, plan, strict=True)):
            info: dict[str, Any] = {
                "path": str(path),
                "target": result.target,
                "probability": result.probability,
                "method": method,
            }
            if gt_boxes is not None and gt_boxes.get(path.name):
                if gt_cls is None:
                    skipped += 1
                    info["localization"] = None
                else:
                    scaled = [scale_box(b, image.shape, gt_original_size) for b in gt]
                    score = score_localization(result.cam, result.boxes, scaled)
                    scores.append({**score, "finding": gt_cls, "path": str(path)})
                    info["gt_boxes"] = scaled
                    info["localization"] = score
            files = write_result(out_dir, stems[start + i], image, result, info)
            records.append({**info, "overlay": files["overlay"], "map": files["map"], "boxes": result.boxes,
                            "boxes_file": files["boxes_file"]})  # fmt: skip
        log.info("explained %d/%d images", min(start + batch_size, len(paths)), len(paths))
    out: dict[str, Any] = {"method": method, "images": records}
    if gt_boxes is not None:
        out["localization"] = {**summarize_localization(scores), "skipped_unknown_finding": skipped}
    return out
