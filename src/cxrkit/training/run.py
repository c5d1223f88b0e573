"""Run a recipe end to end: segmentation, classical, leave-one-source-out, or one fit of a split (``training.fit``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import lightning as L

from cxrkit.data.table import CxrTable
from cxrkit.training.data_prep import prepare_table
from cxrkit.training.fit import fit_table
from cxrkit.training.recipe import CLASSICAL, Recipe

log = logging.getLogger(__name__)


def warm_lung_cache(recipe: Recipe, table: CxrTable) -> None:
    """Segment every image once before training, so that epochs read cached masks instead."""
    if not recipe.preprocess.lungs:
        return
    from cxrkit.models.lungs import LungPreprocessor, LungSpec

    p = recipe.preprocess
    started = time.perf_counter()
    done = LungPreprocessor(LungSpec(p.lungs, p.margin, p.segmenter)).warm_cache(
        table.frame["path"].astype(str).tolist()
    )
    log.info("lung masks: %d images segmented (%.0f s), the rest were cached", done, time.perf_counter() - started)


def train_from_recipe(
    recipe: Recipe, resume: bool = False, progress: bool = True, callbacks: Sequence[L.Callback] = ()
) -> dict[str, Any]:
    """Train what ``recipe`` describes and write ``<out>/bundle`` plus logs, plots and a validation report.

    ``callbacks`` are extra Lightning callbacks (tests use one to record what each rank sampled);
    under ``ddp_spawn`` they are pickled into every rank, so define them at module level.
    On a multi-process run only global rank 0 writes the bundle and returns the summary; other
    ranks (``ddp``, torchrun, SLURM) return ``{}``. ``data.validation: loso`` runs
    ``cxrkit.training.loso.train_loso`` (one fit per held-out source, then the final fit).

    Returns:
        A JSON-ready dict: ``bundle`` path, ``val`` metrics (with thresholds chosen on validation),
        ``best_epoch``, ``epochs_run``, ``train_seconds``, ``images_per_second``.
    """
    if recipe.kind == "segmentation":
        from cxrkit.training.segmentation import train_segmentation

        return train_segmentation(recipe, progress=progress)
    if recipe.model.arch in CLASSICAL:
        from cxrkit.training.classical import train_classical

        return train_classical(recipe)
    if recipe.data.validation == "loso":
        from cxrkit.training.loso import train_loso

        return train_loso(recipe, progress=progress, resume=resume)
    L.seed_everything(recipe.train.seed, workers=True, verbose=False)
    table = prepare_table(recipe.data)
    warm_lung_cache(recipe, table)
    return fit_table(recipe, table, resume=resume, progress=progress, callbacks=callbacks)[0]
