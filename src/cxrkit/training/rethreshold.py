"""Re-choose a trained bundle's operating threshold(s) on its own recorded validation split."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from cxrkit.core.errors import ConfigError
from cxrkit.evaluation import to_jsonable, validate
from cxrkit.models import load_bundle, resolve_bundle
from cxrkit.models.bundle import CONFIG_FILE, normalise_thresholds
from cxrkit.models.quantize import INT8_FILE
from cxrkit.models.records import rewrite_bundle
from cxrkit.models.tta import bundle_tta
from cxrkit.training.data_prep import validation_split
from cxrkit.training.precision import run_bf16_check, run_int8_check, validation_probabilities
from cxrkit.training.recipe import DataSpec, ThresholdSpec

log = logging.getLogger(__name__)


def rethreshold_bundle(
    model: str | Path,
    method: str | None = None,
    target_sensitivity: float | None = None,
    out: Path | None = None,
    operating_class: str | None = None,
) -> dict[str, Any]:
    """Rebuild the validation split recorded in the bundle, choose thresholds there, save the bundle.

    The weights file is copied unchanged (same sha256); ``config.json`` gets the new thresholds, the validation
    metrics at them, and the recipe's ``threshold`` section updated, so the recipe still reproduces it.
    ``operating_class`` (multiclass): the class to give a one-vs-rest threshold; default the bundle's own.
    """
    bundle = load_bundle(resolve_bundle(model))
    recipe = dict(bundle.extra.get("recipe") or {})
    if method is None:  # keep the bundle's own method: only the bf16 check is refreshed
        method = bundle.extra.get("threshold_method") or (recipe.get("threshold") or {}).get("method") or "youden"
        target_sensitivity = target_sensitivity or (recipe.get("threshold") or {}).get("target_sensitivity")
    operating_class = operating_class or (recipe.get("threshold") or {}).get("operating_class")
    if "data" not in recipe:
        raise ValueError(f"{bundle.path}: no recorded recipe; re-thresholding needs the training data spec.")
    if (recipe["data"].get("validation") or "split") == "loso":
        raise ConfigError(
            f"{bundle.path} was validated leave-one-source-out: its thresholds come from the pooled out-of-source "
            "predictions of the fold models. Fix: rerun the recipe with the new threshold.method (--set), or "
            "re-threshold one fold's bundle (<out>/folds/<source>/bundle)."
        )
    val = validation_split(DataSpec(**recipe["data"]), bundle.split_record())
    tta = bundle_tta(bundle.extra)
    space, prep = bundle.label_space, bundle.preprocessing
    probs = validation_probabilities(bundle.model, space, prep, val, tta=tta)
    # The reduced-precision checks compare one forward pass with one: without test-time augmentation.
    plain = validation_probabilities(bundle.model, space, prep, val) if tta != "none" else probs
    ThresholdSpec(method=method, target_sensitivity=target_sensitivity, operating_class=operating_class).check(space)
    checked = validate(space, val.labels, probs, method, target_sensitivity, operating_class)
    thresholds, val_metrics = checked.thresholds, checked.metrics
    decisions = normalise_thresholds(thresholds or None, space)
    tmp = Path(tempfile.mkdtemp(prefix="cxrkit-int8-"))
    precision_check = {
        "bf16": run_bf16_check(bundle.model, space, val, prep, plain, thresholds=decisions),
        "int8": run_int8_check(bundle, val, plain, thresholds=decisions, out=str(tmp / INT8_FILE)),
    }
    int8_file = tmp / INT8_FILE if precision_check["int8"].get("ok") else None
    recipe["threshold"] = {"method": method, "target_sensitivity": target_sensitivity}
    if operating_class:
        recipe["threshold"]["operating_class"] = operating_class
    dest = Path(out or bundle.path)
    config = json.loads((bundle.path / CONFIG_FILE).read_text())
    config["thresholds"] = normalise_thresholds(thresholds or None, bundle.label_space)
    config["metrics"] = {**config.get("metrics", {}), "validation": to_jsonable(val_metrics)}
    config["extra"] = {**config.get("extra", {}), "recipe": recipe, "threshold_method": method}
    config["extra"]["precision_check"] = precision_check
    # The weights file (and the split record) are copied byte for byte: the bundle's sha256 stays the same.
    try:
        rewrite_bundle(bundle.path, config, dest, files={INT8_FILE: int8_file})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"bundle": str(dest), "method": method, "thresholds": thresholds, "validation": val_metrics}
