"""Run the shortcut audit: one pass over the images through the inference engine, then the six checks.

Each image is decoded once; its lung mask is computed once; the full, lungs-blanked, outside-blanked and
border-blanked versions go through the engine (``Engine.logits_and_embeddings``, the one forward path),
and a sample per class is explained with Grad-CAM (``cxrkit.explain``).
"""

from __future__ import annotations

import datetime as _dt
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from cxrkit.audit import checks
from cxrkit.audit.masks import LungMasks, blank, border_region, resolve_lung_masks
from cxrkit.core.errors import ConfigError, DataFormatError
from cxrkit.core.task import LabelSpace, TaskType, class_index
from cxrkit.data import load_datasets
from cxrkit.data.align import align_labels
from cxrkit.data.images import load_image
from cxrkit.data.table import CxrTable
from cxrkit.data.transforms import ImageTransform
from cxrkit.explain import compute_cams
from cxrkit.models import Bundle, load_bundle, resolve_bundle
from cxrkit.models.engine import Engine, InferenceOptions, default_workers
from cxrkit.models.records import seen_mask

log = logging.getLogger(__name__)

MAP_SIZE = 64  # side of the per-class mean Grad-CAM and mean lung mask kept for the report's plot


@dataclass(frozen=True)
class AuditOptions:
    """How the audit runs.

    Attributes:
        border: fraction of each side blanked by the border test.
        fill: what blanked pixels become: "black" (0, like letterbox padding) or "mean" (the image's mean).
        cam_per_class: images per class explained with Grad-CAM (a random sample; Grad-CAM needs a backward pass).
        max_per_source: audit at most this many images per source (a random sample), None for all.
        seed: for the samples and the probes' folds.
    """

    border: float = 0.1
    fill: str = "black"
    cam_per_class: int = 40
    max_per_source: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        border_region((10, 10), self.border)  # validates the fraction
        if self.fill not in ("black", "mean"):
            raise ConfigError(f"Unknown fill {self.fill!r}. Fix: use black or mean.")
        if self.cam_per_class < 0 or (self.max_per_source is not None and self.max_per_source < 1):
            raise ConfigError("cam_per_class must be >= 0 and max_per_source >= 1.")


@dataclass
class AuditResult:
    """The audit's JSON-ready ``summary`` plus per-class mean maps (for the report's plot)."""

    summary: dict[str, Any]
    mean_cams: dict[str, np.ndarray] = field(default_factory=dict)
    mean_masks: dict[str, np.ndarray] = field(default_factory=dict)


class _Decoded(Dataset):
    def __init__(self, paths: Sequence[str]):
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, np.ndarray]:
        return i, load_image(self.paths[i])


def _as_list(batch: list) -> list:
    return batch


def sample_per_source(frame: pd.DataFrame, n: int | None, seed: int = 0) -> np.ndarray:
    """Positions of at most ``n`` random rows of each source (all rows when ``n`` is None), in table order."""
    if n is None:
        return np.arange(len(frame))
    src = frame["source"].astype(str)
    rng = np.random.default_rng(seed)
    keep = np.zeros(len(frame), bool)
    for idx in src.groupby(src).indices.values():
        keep[rng.choice(idx, size=min(n, len(idx)), replace=False)] = True
    return np.flatnonzero(keep)


def image_classes(labels: np.ndarray, classes: Sequence[str], exclusive: bool) -> list[str | None]:
    """The class each image is explained for: its class (exclusive), or its rarest positive finding."""
    if exclusive:
        return [classes[int(i)] if i >= 0 else None for i in class_index(np.asarray(labels))]
    known = np.nan_to_num(labels, nan=0.0)
    freq = known.sum(axis=0)
    out: list[str | None] = []
    for row in known:
        pos = np.flatnonzero(row == 1)
        out.append(classes[int(pos[np.argmin(freq[pos])])] if pos.size else None)
    return out


def _cam_sample(targets: Sequence[str | None], per_class: int, seed: int) -> set[int]:
    rng = np.random.default_rng(seed)
    chosen: set[int] = set()
    for cls in sorted({t for t in targets if t is not None}):
        idx = np.flatnonzero(np.array([t == cls for t in targets]))
        chosen.update(int(i) for i in rng.choice(idx, size=min(per_class, len(idx)), replace=False))
    return chosen


class _CamAccumulator:
    """Per-class sums of Grad-CAM energy fractions, lung area fractions and small mean maps."""

    def __init__(self) -> None:
        self.energy: dict[str, list[float]] = {}
        self.area: dict[str, list[float]] = {}
        self.cams: dict[str, np.ndarray] = {}
        self.masks: dict[str, np.ndarray] = {}

    def add(self, cls: str, cam: np.ndarray, mask: np.ndarray) -> None:
        total = float(cam.sum())
        if total > 0:
            self.energy.setdefault(cls, []).append(float(cam[mask].sum()) / total)
        self.area.setdefault(cls, []).append(float(mask.mean()))
        small = (MAP_SIZE, MAP_SIZE)
        self.cams[cls] = self.cams.get(cls, 0) + cv2.resize(cam, small, interpolation=cv2.INTER_AREA)
        self.masks[cls] = self.masks.get(cls, 0) + cv2.resize(
            mask.astype(np.float32), small, interpolation=cv2.INTER_AREA
        )

    def per_class(self) -> dict[str, Any]:
        return {
            c: {
                "n": len(self.area[c]),
                "energy_in_lungs": checks._r(float(np.mean(self.energy[c]))) if self.energy.get(c) else None,
                "lung_area_fraction": checks._r(float(np.mean(self.area[c]))),
            }
            for c in sorted(self.area)
        }

    def mean_maps(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        n = {c: len(v) for c, v in self.area.items()}
        return {c: m / n[c] for c, m in self.cams.items()}, {c: m / n[c] for c, m in self.masks.items()}


NO_LUNGS_AREA = 0.02  # a mask covering less than this share of the image: no lungs found
NO_LUNGS_SHARE = 0.5  # more images than this without lungs: the lung checks would measure nothing


def _variants(img: np.ndarray, mask: np.ndarray | None, border: np.ndarray, fill: str) -> dict[str, np.ndarray]:
    out = {"full": img, "border": blank(img, border, fill)}
    if mask is not None:
        out["lungs_blanked"] = blank(img, mask, fill)
        out["outside_blanked"] = blank(img, ~mask, fill)
    return out


def _forward(
    bundle: Bundle,
    table: CxrTable,
    labels: np.ndarray,
    lungs: LungMasks,
    options: AuditOptions,
    engine: Engine,
    progress: bool,
) -> tuple[dict[str, np.ndarray], np.ndarray, _CamAccumulator, int]:
    """Logits of every variant of every image, the full images' embeddings, the CAM statistics, and how many
    images the lung masks found no lungs in."""
    transform = ImageTransform(bundle.preprocessing)
    targets = image_classes(labels, bundle.classes, bundle.label_space.exclusive)
    cam_idx = _cam_sample(targets, options.cam_per_class, options.seed) if lungs.available else set()
    logits: dict[str, list[np.ndarray]] = {}
    feats: list[np.ndarray] = []
    cams = _CamAccumulator()
    no_lungs = 0
    workers = min(default_workers(), max(0, (len(table) - 1) // engine.options.batch_size))
    loader: Any = DataLoader(
        _Decoded(table.frame["path"].astype(str).tolist()),
        batch_size=engine.options.batch_size,
        num_workers=workers,
        collate_fn=_as_list,
    )
    if progress:
        from tqdm.auto import tqdm

        loader = tqdm(loader, desc="audit", unit="batch", leave=False)
    for batch in loader:
        idx = [i for i, _ in batch]
        imgs = [img for _, img in batch]
        masks: list[np.ndarray | None] = list(lungs(imgs)) if lungs.available else [None] * len(imgs)
        no_lungs += sum(m is not None and m.mean() < NO_LUNGS_AREA for m in masks)
        versions = [
            _variants(im, m, border_region(im.shape, options.border), options.fill)
            for im, m in zip(imgs, masks, strict=True)
        ]
        for name in versions[0]:
            x = torch.stack([transform(v[name]) for v in versions])
            lo, fe = engine.logits_and_embeddings(x)
            logits.setdefault(name, []).append(lo)
            if name == "full":
                feats.append(fe)
        chosen = [k for k, i in enumerate(idx) if i in cam_idx]
        if chosen:
            results = compute_cams(
                bundle, [imgs[k] for k in chosen], target=[targets[idx[k]] for k in chosen], engine=engine
            )
            for k, res in zip(chosen, results, strict=True):
                cams.add(res.target, res.cam, masks[k])
    return {k: np.concatenate(v) for k, v in logits.items()}, np.concatenate(feats), cams, no_lungs


def audit_table(
    bundle: Bundle,
    table: CxrTable,
    labels: np.ndarray,
    lungs: LungMasks,
    options: AuditOptions | None = None,
    inference: InferenceOptions | None = None,
    progress: bool = False,
) -> AuditResult:
    """The six checks of ``bundle`` on ``table`` (``labels``: the table's labels as the model's class columns)."""
    options = options or AuditOptions()
    if not len(table):
        raise DataFormatError("No images to audit.")
    engine = Engine(bundle, inference or InferenceOptions())
    start = time.perf_counter()
    logits, embeddings, cams, no_lungs = _forward(bundle, table, labels, lungs, options, engine, progress)
    log.info(
        "audit: %d images x %d versions through the engine (%s), %d Grad-CAMs, in %.0f s; probing",
        len(table),
        len(logits),
        engine.describe(),
        sum(len(v) for v in cams.area.values()),
        time.perf_counter() - start,
    )
    proba = {k: engine.to_proba(v) for k, v in logits.items()}
    space = bundle.label_space
    score = {k: checks.label_matrix_auroc(space, labels, p) for k, p in proba.items()}
    groups = table.group_ids()
    full = score["full"]["auroc"]
    result: dict[str, Any] = {
        "source_probe": checks.source_probe(embeddings, table.frame, groups),
        "confounding": checks.confounding(table.frame, labels, space, groups),
        "per_source": checks.per_source(table.frame, labels, proba["full"], space),
        "border": checks.border_verdict(full, score["border"]["auroc"], options.border),
    }
    if lungs.available and no_lungs / len(table) > NO_LUNGS_SHARE:
        why = (
            f"Skipped: the segmenter found no lungs in {no_lungs} of {len(table)} images (lateral views, or "
            "images outside its intended input such as 28 px thumbnails); blanking nothing would pass as a "
            "lung test. Fix: audit frontal images of 128 px or more, or use --lungs prior."
        )
        result["occlusion"] = {"status": "skipped", "verdict": why}
        result["cam_in_lungs"] = {"status": "skipped", "verdict": why}
    elif lungs.available:
        result["occlusion"] = checks.occlusion_verdict(
            full, score["lungs_blanked"]["auroc"], score["outside_blanked"]["auroc"]
        )
        result["cam_in_lungs"] = checks.cam_verdict(cams.per_class(), sum(v["n"] for v in cams.per_class().values()))
    else:
        skipped = {"status": "skipped", "verdict": f"Skipped: no lung masks. {lungs.note}"}
        result["occlusion"] = dict(skipped)
        result["cam_in_lungs"] = dict(skipped)
    for name, check in result.items():
        check["meaning"] = checks.MEANINGS[name]
    order = ("source_probe", "confounding", "per_source", "occlusion", "cam_in_lungs", "border")
    summary = {
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "model": {"path": str(bundle.path), "architecture": bundle.architecture, "sha256": bundle.fingerprint},
        "task": space.task.value,
        "classes": list(space.classes),
        "data": {
            "n_images": len(table),
            "sources": table.frame["source"].astype(str).value_counts().to_dict(),
            "class_counts": {c: int(np.nansum(labels[:, j] == 1)) for j, c in enumerate(space.classes)},
        },
        "lung_masks": {"name": lungs.name, "note": lungs.note},
        "options": asdict(options),
        "inference": engine.describe(),
        "auroc": {k: v["auroc"] for k, v in score.items()},
        "checks": {k: result[k] for k in order},
        "targets": targets_met(result),
    }
    mean_cams, mean_masks = cams.mean_maps()
    return AuditResult(summary, mean_cams, mean_masks)


def targets_met(result: dict[str, Any]) -> dict[str, Any]:
    """Issue 11's lung-focus targets: each True/False, or None where the check was skipped."""
    occ, cam = result["occlusion"], result["cam_in_lungs"]
    full, lb, ob = occ.get("auroc_full"), occ.get("auroc_lungs_blanked"), occ.get("auroc_outside_blanked")
    energy = cam.get("energy_in_lungs")
    met = {
        f"auroc_lungs_blanked <= {checks.LUNGS_BLANKED_MAX}": None
        if lb is None
        else bool(lb <= checks.LUNGS_BLANKED_MAX),
        f"auroc_outside_blanked within {checks.OUTSIDE_DROP_MAX} of full": (
            None if full is None or ob is None else bool(full - ob <= checks.OUTSIDE_DROP_MAX)
        ),
        f"cam_energy_in_lungs >= {checks.CAM_IN_LUNGS_MIN}": None
        if energy is None
        else bool(energy >= checks.CAM_IN_LUNGS_MIN),
    }
    values = list(met.values())
    met["all"] = None if None in values else all(values)
    return met


def rows_with_a_class(space: LabelSpace, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which rows the audit scores (a boolean mask), and the labels with a binary model's negative filled in.

    Binary: rows whose positive class is known (in multi-label data "no pneumonia" is the negative), except
    rows of another class of an exclusive dataset (both columns 0, e.g. SARS for a pneumonia model).
    Multiclass: rows of exactly one of the model's classes. Multi-label: rows with any label known.
    """
    labels = np.array(labels, np.float32, copy=True)
    if space.task is TaskType.BINARY:
        known = np.isfinite(labels[:, 1]) & ~((labels[:, 0] == 0) & (labels[:, 1] == 0))
        labels[:, 0] = 1.0 - labels[:, 1]
    elif space.exclusive:
        known = np.nansum(labels, axis=1) == 1
    else:
        known = np.isfinite(labels).any(axis=1)
    return known, labels


def run_audit(
    model: str | Path | Bundle,
    data: Sequence[str],
    split: str | None = None,
    label_map: Sequence[str] = (),
    lungs: Any = "auto",
    options: AuditOptions | None = None,
    inference: InferenceOptions | None = None,
    progress: bool = False,
    unseen_only: bool = False,
) -> AuditResult:
    """Audit a bundle for shortcuts on labelled datasets (see ``audit_table``).

    Args:
        model: a bundle (loaded, a folder or a shipped name).
        data: dataset paths or manifests (as for ``cxr evaluate``).
        split: audit only this split of a manifest.
        label_map: 'DATASET_CLASS=MODEL_CLASS' entries for datasets whose class names differ.
        lungs: the lung mask provider (see ``resolve_lung_masks``).
        options: see ``AuditOptions``.
        inference: engine options (backend, precision, device, batch size).
        unseen_only: leave out images the bundle was trained or validated on (needs its recorded image hashes).
    """
    bundle = model if isinstance(model, Bundle) else load_bundle(resolve_bundle(model))
    options = options or AuditOptions()
    table = load_datasets(list(data))
    if split:
        table = table.split(split)
    labels = align_labels(table, bundle.classes, label_map)
    known, labels = rows_with_a_class(bundle.label_space, labels)
    if not known.any():
        raise DataFormatError(
            f"None of the {len(table)} images carries one of the model's classes {list(bundle.classes)}. "
            "Fix: map the data's classes with --label-map DATASET_CLASS=MODEL_CLASS."
        )
    table, labels = table.subset(known), labels[known]
    if unseen_only:
        seen = seen_mask(bundle, table)
        if seen is None:
            raise ConfigError(
                f"{bundle.path} records no image hashes, so images it was trained on cannot be left out. "
                "Fix: drop --unseen-only, or audit on data it never saw."
            )
        table, labels = table.subset(~seen), labels[~seen]
        if not len(table):
            raise DataFormatError("Every image of this data was in the model's training or validation data.")
    rows = sample_per_source(table.frame, options.max_per_source, options.seed)
    table, labels = table.subset(rows), labels[rows]
    seen = seen_mask(bundle, table) if not unseen_only else np.zeros(len(table), bool)
    result = audit_table(bundle, table, labels, resolve_lung_masks(lungs), options, inference, progress)
    result.summary["data"]["datasets"] = [str(d) for d in data]
    result.summary["data"]["seen_in_training"] = (
        {"checked": False}
        if seen is None
        else {"checked": True, "count": int(seen.sum()), "fraction": float(seen.mean())}
    )
    return result
