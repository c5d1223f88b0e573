"""One fit of a table: model, Lightning trainer, best checkpoint, validation, thresholds, bundle.

``cxrkit.training.run`` picks the kind of training a recipe asks for; a plain split and every
leave-one-source-out fold (``cxrkit.training.loso``) end here.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from cxrkit.core.files import atomic_write_text
from cxrkit.core.jsonable import json_text
from cxrkit.core.precision import lightning_precision
from cxrkit.core.preprocess import Preprocessing
from cxrkit.core.task import LabelSpace
from cxrkit.data import class_weights
from cxrkit.data.augment import Augmentation, BatchAugment
from cxrkit.data.fingerprint import split_record
from cxrkit.data.table import CxrTable
from cxrkit.evaluation import Validation, headline_auroc, learning_curve_plot, validate
from cxrkit.models import create_model, get_model_info, save_bundle
from cxrkit.models.bundle import normalise_thresholds
from cxrkit.training.callbacks import EpochLog
from cxrkit.training.data_prep import data_summary, intended_input
from cxrkit.training.datamodule import CxrDataModule
from cxrkit.training.module import CxrClassifier
from cxrkit.training.precision import run_bf16_check, validation_probabilities
from cxrkit.training.recipe import CLASSICAL, Recipe

log = logging.getLogger(__name__)


def preprocessing_for(recipe: Recipe) -> Preprocessing:
    info = get_model_info(recipe.model.arch) if recipe.model.arch not in CLASSICAL else None
    base = info.preprocessing if info is not None else Preprocessing()
    p = recipe.preprocess
    return Preprocessing(
        image_size=recipe.model.image_size,
        resize=recipe.model.resize,
        mean=base.mean,
        std=base.std,
        in_chans=1,
        lungs=p.lungs,
        lung_margin=p.margin,
        lung_segmenter=p.segmenter,
        equalize=p.equalize,
    )


def augmentation_for(recipe: Recipe) -> Augmentation | None:
    return recipe.augment if recipe.augment.enabled else None


@dataclass
class FixedOutcome:
    """A fit without a validation split (LOSO's final model on every source): what the folds decided.

    ``thresholds`` and ``metrics`` (the bundle's) come from out-of-source validation; ``check_rows`` are the
    images the bf16 check runs on; ``extra`` goes into the bundle's config.
    """

    thresholds: list[float] | dict[str, float]
    metrics: dict[str, Any]
    check_rows: CxrTable
    extra: dict[str, Any] = field(default_factory=dict)


def fit_table(
    recipe: Recipe,
    table: CxrTable,
    resume: bool = False,
    progress: bool = True,
    callbacks: Sequence[L.Callback] = (),
    fixed: FixedOutcome | None = None,
) -> tuple[dict[str, Any], np.ndarray | None]:
    """Fit on ``table``'s train split, validate on its val split, and write ``recipe.out_dir``.

    With ``fixed`` there is no validation: every row trains for ``train.epochs`` epochs and the bundle takes
    ``fixed``'s thresholds and metrics. Returns the summary and the validation probabilities (None with
    ``fixed``, and ``({}, None)`` on ranks other than 0).
    """
    recipe.threshold.check(table.label_space)
    out = recipe.out_dir
    out.mkdir(parents=True, exist_ok=True)
    train, val = table.split("train"), table.split("val")
    log.info("train %d images, val %d images, classes %s", len(train), len(val), list(table.classes))
    prep = preprocessing_for(recipe)
    model = create_model(
        recipe.model.arch,
        table.label_space,
        in_chans=prep.in_chans,
        weights=recipe.model.weights,
        drop_rate=recipe.model.drop_rate,
        image_size=recipe.model.image_size,
    )
    if recipe.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if recipe.train.compile:
        model.compile()  # in place: the state dict (checkpoints, the bundle) keeps its plain keys
    weights = class_weights(train) if recipe.data.balance == "weights" else None
    aug = augmentation_for(recipe)
    on_device = aug is not None and aug.run_on == "device"
    teacher = None
    if recipe.train.distill_from:
        from cxrkit.training.distill import load_teachers

        teacher = load_teachers(recipe.train.distill_from, table.label_space, prep, recipe.train.distill_temperature)
    module = CxrClassifier(
        model,
        table.label_space,
        recipe.train,
        weights,
        augment=BatchAugment(aug, prep) if on_device else None,
        teacher=teacher,
        tta=recipe.model.tta,
    )
    dm = CxrDataModule(
        train,
        val,
        prep,
        None if on_device else aug,
        batch_size=recipe.train.batch_size,
        num_workers=recipe.train.num_workers,
        balanced_sampler=recipe.data.balance == "sampler",
        source_column=recipe.data.source_column if recipe.data.balance == "source" else None,
        seed=recipe.train.seed,
    )
    trainer, checkpoint = _trainer(recipe, out, progress, callbacks, validate=fixed is None)
    ckpt_path = _resume_path(out) if resume else None
    started = time.perf_counter()
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
    seconds = time.perf_counter() - started
    if not trainer.is_global_zero:
        return {}, None
    best_epoch = _load_best(module, checkpoint) if fixed is None else trainer.current_epoch - 1
    return _finish(recipe, out, table, train, val, module.final_model, prep, best_epoch, trainer, seconds, fixed)


def _trainer(
    recipe: Recipe, out: Path, progress: bool, extra: Sequence[L.Callback] = (), validate: bool = True
) -> tuple[L.Trainer, L.pytorch.callbacks.ModelCheckpoint | None]:
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    t = recipe.train
    mode = "min" if t.monitor.endswith("loss") else "max"
    checkpoint = ModelCheckpoint(
        dirpath=out / "checkpoints", filename="best", monitor=t.monitor, mode=mode, save_top_k=1
    )
    # Lightning >= 2.6 rewrites save_last's last.ckpt only in a step that also saved a best checkpoint;
    # resuming (and the ddp_spawn progress read-back) need the latest epoch, so this one rewrites it every epoch.
    last = ModelCheckpoint(dirpath=out / "checkpoints", filename="last", save_top_k=1, enable_version_counter=False)
    callbacks: list[L.Callback] = [
        checkpoint,  # first: trainer.checkpoint_callback, whose best_model_path ddp_spawn hands back
        last,
        EarlyStopping(monitor=t.monitor, mode=mode, patience=t.patience, check_finite=False),
    ]
    if not progress:  # no bar (not a terminal, or --quiet): a line per epoch instead of silence
        callbacks.append(EpochLog())
    if not validate:  # a fixed number of epochs, nothing to monitor: only the resumable last.ckpt
        callbacks, checkpoint = [last], None
    callbacks += list(extra)
    kwargs: dict[str, Any] = {}
    if t.limit_train_batches is not None:
        kwargs["limit_train_batches"] = t.limit_train_batches
        kwargs["limit_val_batches"] = t.limit_train_batches
    if not validate:
        kwargs["limit_val_batches"] = 0
    trainer = L.Trainer(
        max_epochs=t.epochs,
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=t.strategy,
        precision=lightning_precision(t.precision),
        max_time=timedelta(minutes=t.max_minutes) if t.max_minutes else None,
        logger=CSVLogger(out, name="logs", version=0),
        callbacks=callbacks,
        enable_progress_bar=progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=1,  # metrics are logged per epoch; 10 only warned on small sets (< 10 batches)
        deterministic=False,
        **kwargs,
    )
    return trainer, checkpoint


def _resume_path(out: Path) -> str | None:
    last = out / "checkpoints" / "last.ckpt"
    if last.is_file():
        log.info("resuming from %s", last)
        return str(last)
    log.warning("no checkpoint at %s to resume from; starting afresh", last)
    return None


def _load_best(module: CxrClassifier, checkpoint) -> int | None:
    """Load the best checkpoint's weights (weights only: nothing is unpickled) and return its epoch."""
    path = checkpoint.best_model_path if checkpoint is not None else ""
    if not path:
        return None
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    module.load_state_dict(ckpt["state_dict"])
    return int(ckpt.get("epoch", -1))


def _finish(
    recipe: Recipe,
    out: Path,
    table: CxrTable,
    train: CxrTable,
    val: CxrTable,
    model: torch.nn.Module,
    prep: Preprocessing,
    best_epoch: int | None,
    trainer: L.Trainer,
    seconds: float,
    fixed: FixedOutcome | None = None,
) -> tuple[dict[str, Any], np.ndarray | None]:
    """Validate the fitted model (or take ``fixed``'s outcome), write the bundle and ``result.json``."""
    space = table.label_space
    model = model.float().eval()
    _copy_learning_curve(out, best_epoch, plot=recipe.train.plots)
    probs, thresholds, metrics, precision_check = _validated(recipe, out, model, prep, val, space, fixed)
    val_metrics = metrics.get("validation") or {}
    epochs_run, steps = _progress(trainer, out)
    images_seen = steps * recipe.train.batch_size * trainer.world_size  # every rank takes a batch per step
    extra = {
        "recipe": recipe.to_dict(),
        "best_epoch": best_epoch,
        "epochs_run": epochs_run,
        "train_seconds": round(seconds, 1),
        "threshold_method": recipe.threshold.method,
        "world_size": trainer.world_size,
        "precision_check": precision_check,
        "tta": recipe.model.tta,
        "weights_averaging": f"ema {recipe.train.ema}" if recipe.train.ema else "none",
        "distilled_from": list(recipe.train.distill_from),
        **(fixed.extra if fixed is not None else {}),
    }
    bundle = save_bundle(
        out / "bundle",
        model,
        recipe.model.arch,
        space,
        prep,
        thresholds=thresholds or None,
        metrics=metrics,
        data_summary=data_summary(table, recipe.data),
        license=recipe.license,
        intended_input=intended_input(table, recipe.data),
        images=split_record(train, val),  # the exact split and seen-image hashes (cxrkit.models.records)
        extra=extra,
    )
    summary = {
        "name": recipe.name,
        "bundle": str(bundle),
        "val": {k: val_metrics.get(k) for k in _headline_keys(space.task.value)},
        "val_auroc": headline_auroc(val_metrics) if val_metrics else None,
        "thresholds": thresholds,
        "best_epoch": best_epoch,
        "epochs_run": epochs_run,
        "train_seconds": round(seconds, 1),
        "images_per_second": round(images_seen / seconds, 1) if seconds else None,
        "n_train": len(train),
        "n_val": len(val),
        "world_size": trainer.world_size,
    }
    atomic_write_text(out / "result.json", json_text(summary, lenient=True))
    return summary, probs


def _copy_learning_curve(out: Path, best_epoch: int | None, plot: bool) -> None:
    metrics_csv = out / "logs" / "version_0" / "metrics.csv"
    if not metrics_csv.is_file():
        return
    shutil.copyfile(metrics_csv, out / "metrics.csv")
    if plot:
        learning_curve_plot(out / "metrics.csv", out / "learning_curve.png", best_epoch=best_epoch)


def _validated(
    recipe: Recipe,
    out: Path,
    model: torch.nn.Module,
    prep: Preprocessing,
    val: CxrTable,
    space: LabelSpace,
    fixed: FixedOutcome | None,
) -> tuple[np.ndarray | None, list[float], dict[str, Any], dict[str, Any]]:
    """Validation probabilities (None with ``fixed``), thresholds, the bundle's metrics and its bf16 check."""
    if fixed is not None:  # thresholds and metrics decided elsewhere (LOSO's folds)
        decisions = normalise_thresholds(fixed.thresholds or None, space)
        check = run_bf16_check(model, space, fixed.check_rows, prep, thresholds=decisions)
        return None, fixed.thresholds, fixed.metrics, {"bf16": check}
    probs = validation_probabilities(
        model, space, prep, val, tta=recipe.model.tta, num_workers=recipe.train.num_workers
    )
    checked = validate_recipe(recipe, space, val.labels, probs, report=out / "val_report", title="validation split")
    decisions = normalise_thresholds(checked.thresholds or None, space)
    # The check compares one forward pass with one: fp32 probabilities without test-time augmentation.
    plain = probs if recipe.model.tta == "none" else None
    check = run_bf16_check(model, space, val, prep, probs_fp32=plain, thresholds=decisions)
    return probs, checked.thresholds, {"validation": checked.metrics}, {"bf16": check}


def validate_recipe(
    recipe: Recipe, space: LabelSpace, labels: np.ndarray, probs: np.ndarray, report: Path, title: str
) -> Validation:
    """``validate`` with the recipe's threshold method; 0.5 where the data cannot support a threshold (a
    held-out source with one class)."""
    t = recipe.threshold
    return validate(space, labels, probs, t.method, t.target_sensitivity, t.operating_class, fallback=True, report=report,
                    title=f"{recipe.name}: {title}", plots=recipe.train.plots)  # fmt: skip


def _progress(trainer: L.Trainer, out: Path) -> tuple[int, int]:
    """Epochs run and optimizer steps taken.

    Under ``ddp_spawn`` the fit ran in child processes and this trainer's counters stay at 0, so they
    are read back from the last checkpoint that rank 0 wrote.
    """
    epochs, steps = trainer.current_epoch, trainer.global_step
    last = out / "checkpoints" / "last.ckpt"
    if trainer.world_size > 1 and steps == 0 and last.is_file():
        ckpt = torch.load(last, map_location="cpu", weights_only=True)
        epochs, steps = int(ckpt.get("epoch", -1)) + 1, int(ckpt.get("global_step", 0))
    return epochs, steps


def _headline_keys(task: str) -> tuple[str, ...]:
    if task == "binary":
        return ("n", "accuracy", "auroc", "auroc_ci", "sensitivity", "specificity", "threshold", "ece")
    if task == "multiclass":
        return ("n", "accuracy", "macro_auroc", "macro_auroc_ci", "macro_f1", "ece", "operating_point")
    return ("n", "mean_auroc", "mean_auroc_ci", "n_labels_scored", "ece")
