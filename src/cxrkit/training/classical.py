"""Classical baselines from a recipe: KNN or logistic regression on pixels or on CNN embeddings."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from cxrkit.core.files import atomic_write_text
from cxrkit.core.jsonable import json_text
from cxrkit.core.preprocess import Preprocessing
from cxrkit.data.table import CxrTable
from cxrkit.evaluation import headline_auroc, validate
from cxrkit.models import ClassicalBaseline, create_model
from cxrkit.models.engine import Engine, InferenceOptions, table_loader
from cxrkit.training.data_prep import prepare_table
from cxrkit.training.recipe import Recipe

log = logging.getLogger(__name__)
PIXEL_SIDE = 32  # the classic tutorials flatten small thumbnails


def _features(recipe: Recipe, table: CxrTable) -> np.ndarray:
    workers = recipe.train.num_workers
    if recipe.model.features == "pixels":
        # Decode at 64 px (mean 0, std 1: raw [0,1] pixels); the baseline area-averages to 32 px.
        prep = Preprocessing(image_size=2 * PIXEL_SIDE, resize=recipe.model.resize, mean=0.0, std=1.0)
        batches = [x.numpy() for x, _ in table_loader(table, prep, 64, workers)]
        return np.concatenate(batches) if batches else np.zeros((0, 0), np.float32)
    # The head is never used: only the backbone's (pretrained) penultimate features.
    model = create_model(recipe.model.embed_arch, table.label_space, weights=recipe.model.weights)
    prep = Preprocessing(image_size=recipe.model.image_size, resize=recipe.model.resize)
    options = InferenceOptions(precision="fp32", batch_size=64, num_workers=workers)
    return np.asarray(Engine.for_model(model, table.label_space, prep, options=options).run_table(table, "embedding"))


def train_classical(recipe: Recipe) -> dict[str, Any]:
    out = recipe.out_dir
    out.mkdir(parents=True, exist_ok=True)
    table = prepare_table(recipe.data)
    recipe.threshold.check(table.label_space)
    train, val = table.split("train"), table.split("val")
    started = time.perf_counter()
    x_train, x_val = _features(recipe, train), _features(recipe, val)
    features = "pixels" if recipe.model.features == "pixels" else "embeddings"
    baseline = ClassicalBaseline(method=recipe.model.arch, features=features, pixel_size=PIXEL_SIDE, k=recipe.model.k)
    baseline.fit(x_train, train.labels, table.label_space)
    probs = baseline.predict_proba(x_val)
    seconds = time.perf_counter() - started
    space = table.label_space
    t = recipe.threshold
    checked = validate(space, val.labels, probs, t.method, t.target_sensitivity, t.operating_class, report=out / "val_report",
                       title=f"{recipe.name}: validation split", plots=recipe.train.plots)  # fmt: skip
    thresholds, result = checked.thresholds, checked.result
    baseline.save(out / "baseline")
    summary = {
        "name": recipe.name,
        "baseline": str(out / "baseline"),
        "val_auroc": headline_auroc(result),
        "val": {
            k: result.get(k)
            for k in ("n", "accuracy", "auroc", "auroc_ci", "macro_auroc", "sensitivity", "specificity", "mean_auroc")
        },
        "thresholds": thresholds,
        "train_seconds": round(seconds, 1),
        "n_train": len(train),
        "n_val": len(val),
    }
    atomic_write_text(out / "result.json", json_text(summary, lenient=True))
    return summary
