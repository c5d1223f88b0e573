"""Lightning callbacks of cxrkit's training loop."""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import lightning as L

log = logging.getLogger("cxrkit.training")

SHOWN = ("train_loss", "val_loss", "val_auroc", "val_acc")


class EpochLog(L.Callback):
    """One log line per epoch (rank 0): epoch, metrics, time. For runs without a progress bar (not a terminal),
    which Lightning otherwise leaves silent until the end."""

    def __init__(self) -> None:
        self._t0 = time.monotonic()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0 = time.monotonic()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero or trainer.sanity_checking:
            return
        metrics: dict[str, Any] = trainer.callback_metrics
        parts = []
        for key in SHOWN:
            if key in metrics:
                v = float(metrics[key])
                parts.append(f"{key} {v:.4f}" if math.isfinite(v) else f"{key} n/a")
        log.info(
            "epoch %d/%d: %s (%.1f s)",
            trainer.current_epoch + 1,
            trainer.max_epochs,
            ", ".join(parts) or "no metrics yet",
            time.monotonic() - self._t0,
        )
