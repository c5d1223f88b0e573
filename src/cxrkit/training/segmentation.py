"""Train a lung segmenter from a recipe (``kind: segmentation``): U-Net, Dice + BCE, patient-grouped split.

Images and masks are decoded and resized once into memory (the V7 set is 361 small images), then
albumentations (2.0.x, the MIT-licensed line) moves each image and its mask with the same flip/affine
(nearest-neighbour for the mask); brightness/contrast/gamma touch only the image. The recipe's
``augment`` section (``cxrkit.data.augment.Augmentation``) gives the magnitudes; its kornia pipeline
is for classifiers, whose labels do not move.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import albumentations as A
import cv2
import lightning as L
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from cxrkit.core.errors import ConfigError
from cxrkit.core.files import atomic_write_text
from cxrkit.core.precision import lightning_precision
from cxrkit.core.preprocess import Preprocessing
from cxrkit.data.augment import Augmentation
from cxrkit.data.segmentation import load_mask_pairs, read_mask, split_pairs_by_patient
from cxrkit.evaluation.segmentation import evaluate_segmenter, segmentation_metrics
from cxrkit.io import read_image
from cxrkit.models.segmentation import SEG_ARCHS, create_segmenter, load_segmenter, save_segmenter
from cxrkit.training.optim import configure
from cxrkit.training.recipe import Recipe, TrainSpec

log = logging.getLogger(__name__)
SEG_MEAN, SEG_STD = 0.5, 0.5  # the TF Lite0 weights expect [-1, 1] inputs


def pair_augmentation(spec: Augmentation) -> A.Compose | None:
    """Geometric steps move image and mask together; intensity steps apply to the image only."""
    if not spec.enabled:
        return None
    steps: list[A.BasicTransform] = []
    if spec.hflip:
        steps.append(A.HorizontalFlip(p=spec.hflip))
    if spec.rotation or spec.zoom or spec.shift:
        steps.append(
            A.Affine(
                scale=(1 - spec.zoom, 1 + spec.zoom),
                translate_percent=(-spec.shift, spec.shift),
                rotate=(-spec.rotation, spec.rotation),
                interpolation=cv2.INTER_LINEAR,
                mask_interpolation=cv2.INTER_NEAREST,
                border_mode=cv2.BORDER_CONSTANT,
                fill=0,
                fill_mask=0,
                p=0.9,
            )
        )
    if spec.brightness or spec.contrast:
        steps.append(A.RandomBrightnessContrast(spec.brightness, spec.contrast, p=0.8))
    if spec.gamma:
        steps.append(A.RandomGamma(gamma_limit=(100 * (1 - spec.gamma), 100 * (1 + spec.gamma)), p=spec.p))
    return A.Compose(steps)


def load_pairs_resized(pairs: pd.DataFrame, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Images (N x S x S float32 in [0,1]) and masks (N x S x S uint8 0/1), squashed to ``size``."""
    images = np.zeros((len(pairs), size, size), np.float32)
    masks = np.zeros((len(pairs), size, size), np.uint8)
    for i, (image, mask) in enumerate(pairs[["image", "mask"]].itertuples(index=False)):
        img = read_image(image)
        m = read_mask(mask, img.shape).astype(np.float32)
        images[i] = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
        masks[i] = cv2.resize(m, (size, size), interpolation=cv2.INTER_LINEAR) >= 0.5
    return images, masks


class PairDataset(Dataset):
    """(image 1xSxS normalised, mask 1xSxS float) pairs from in-memory arrays, augmented together."""

    def __init__(self, images: np.ndarray, masks: np.ndarray, augment: A.Compose | None = None):
        self.images, self.masks, self.augment = images, masks, augment

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        img, mask = self.images[i], self.masks[i]
        if self.augment is not None:
            out = self.augment(image=img, mask=mask)
            img, mask = np.clip(out["image"], 0.0, 1.0), out["mask"]
        x = (torch.from_numpy(np.ascontiguousarray(img, np.float32))[None] - SEG_MEAN) / SEG_STD
        return x, torch.from_numpy(np.ascontiguousarray(mask, np.float32))[None]


def dice_bce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE plus soft Dice (smp's DiceLoss, which skips images whose mask is empty); both from logits."""
    from segmentation_models_pytorch.losses import DiceLoss

    return DiceLoss(mode="binary", from_logits=True)(logits, target) + F.binary_cross_entropy_with_logits(
        logits, target
    )


class SegModule(L.LightningModule):
    def __init__(self, model: torch.nn.Module, spec: TrainSpec):
        super().__init__()
        self.model, self.spec = model, spec
        self._preds: list[np.ndarray] = []
        self._targets: list[np.ndarray] = []

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
        x, y = batch
        loss = dice_bce_loss(self.model(x), y)
        self.log("train_loss", loss, prog_bar=True, on_epoch=True, on_step=False, batch_size=len(x))
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> None:
        x, y = batch
        logits = self.model(x)
        self.log("val_loss", dice_bce_loss(logits, y), on_epoch=True, batch_size=len(x))
        self._preds += list((logits[:, 0] > 0).cpu().numpy())
        self._targets += list((y[:, 0] > 0.5).cpu().numpy())

    def on_validation_epoch_end(self) -> None:
        if self._preds:
            m = segmentation_metrics(self._preds, self._targets)
            self.log("val_dice", m["dice_lungs"], prog_bar=True)
            self.log("val_iou", m["iou_lungs"])
        self._preds, self._targets = [], []

    def configure_optimizers(self) -> Any:
        everything = {id(p) for p in self.model.parameters()}  # one learning rate: no new head, nothing frozen
        return configure(self.model.named_parameters(), everything, self.spec, self.trainer.estimated_stepping_batches)


def train_segmentation(recipe: Recipe, progress: bool = True) -> dict[str, Any]:
    """Train the recipe's segmenter; write ``<out>/bundle`` (a segmentation bundle) and ``result.json``.

    Returns:
        ``bundle``, validation Dice/IoU at the masks' own size, split counts, epochs and seconds.
    """
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    out, t, size = recipe.out_dir, recipe.train, recipe.model.image_size
    out.mkdir(parents=True, exist_ok=True)
    L.seed_everything(t.seed, workers=True, verbose=False)
    if len(recipe.data.sources) != 1:
        raise ConfigError(f"a segmentation recipe takes one mask folder in data.sources, got {recipe.data.sources}")
    pairs = split_pairs_by_patient(load_mask_pairs(recipe.data.sources[0]), val=recipe.data.val, seed=recipe.data.seed)
    train, val = pairs[pairs.split == "train"], pairs[pairs.split == "val"]
    log.info("segmentation: %d train / %d val images (%d / %d patients)", len(train), len(val),
             train.patient_id.nunique(), val.patient_id.nunique())  # fmt: skip
    model = create_segmenter(recipe.model.arch, weights=recipe.model.weights)
    if t.channels_last:  # oneDNN's convolutions are about 30% faster on NHWC on a CPU (measured)
        model = model.to(memory_format=torch.channels_last)
    loaders = [
        DataLoader(
            PairDataset(*load_pairs_resized(df, size), augment=pair_augmentation(recipe.augment) if tr else None),
            batch_size=t.batch_size,
            shuffle=tr,
            num_workers=t.num_workers,
            drop_last=tr and len(df) > t.batch_size,
        )
        for df, tr in ((train, True), (val, False))
    ]
    best = ModelCheckpoint(dirpath=out / "checkpoints", filename="best", monitor="val_dice", mode="max")
    trainer = L.Trainer(
        max_epochs=t.epochs,
        accelerator=t.accelerator,
        devices=1,
        precision=lightning_precision(t.precision),
        max_time=timedelta(minutes=t.max_minutes) if t.max_minutes else None,
        logger=CSVLogger(out, name="logs", version=0),
        callbacks=[best, EarlyStopping(monitor="val_dice", mode="max", patience=t.patience, check_finite=False)],
        enable_progress_bar=progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=5,
        limit_train_batches=t.limit_train_batches,
    )
    module = SegModule(model, t)
    started = time.perf_counter()
    trainer.fit(module, train_dataloaders=loaders[0], val_dataloaders=loaders[1])
    seconds = time.perf_counter() - started
    best_epoch = None
    if best.best_model_path:
        ckpt = torch.load(best.best_model_path, map_location="cpu", weights_only=True)
        module.load_state_dict(ckpt["state_dict"])
        best_epoch = int(ckpt.get("epoch", -1))
    return _finish(recipe, out, module.model.eval(), pairs, train, val, best_epoch, trainer, seconds)


def _finish(
    recipe: Recipe,
    out: Path,
    model: torch.nn.Module,
    pairs: pd.DataFrame,
    train: pd.DataFrame,
    val: pd.DataFrame,
    best_epoch: int | None,
    trainer: L.Trainer,
    seconds: float,
) -> dict[str, Any]:
    prep = Preprocessing(image_size=recipe.model.image_size, resize="squash", mean=SEG_MEAN, std=SEG_STD, in_chans=1)
    data_summary = {
        "source": str(recipe.data.sources[0]),
        "n_images": len(pairs),
        "n_patients": int(pairs.patient_id.nunique()),
        "splits": {
            s: {"images": len(d), "patients": int(d.patient_id.nunique())} for s, d in (("train", train), ("val", val))
        },
        "views": {str(k): int(v) for k, v in pairs["view"].value_counts(dropna=False).items()},
        "split_seed": recipe.data.seed,
        "val_fraction": recipe.data.val,
    }
    extra = {"name": recipe.name, "recipe": recipe.to_dict(), "best_epoch": best_epoch,
             "epochs_run": trainer.current_epoch, "train_seconds": round(seconds, 1)}  # fmt: skip
    bundle = save_segmenter(
        out / "bundle", model, recipe.model.arch, prep, 0.5, {}, data_summary, recipe.license, extra=extra
    )
    # Validation at each mask's own size, through the same path users get (resize back, clean, threshold).
    metrics = evaluate_segmenter(load_segmenter(bundle), val)
    bundle = save_segmenter(
        out / "bundle",
        model,
        recipe.model.arch,
        prep,
        0.5,
        {"validation": metrics},
        data_summary,
        recipe.license,
        extra=extra,
    )
    summary = {"name": recipe.name, "bundle": str(bundle), "val": metrics, "best_epoch": best_epoch,
               "epochs_run": trainer.current_epoch, "train_seconds": round(seconds, 1),
               "n_train": len(train), "n_val": len(val)}  # fmt: skip
    atomic_write_text(out / "result.json", json.dumps(summary, indent=2))
    return summary


__all__ = ["SEG_ARCHS", "PairDataset", "SegModule", "dice_bce_loss", "pair_augmentation", "train_segmentation"]
