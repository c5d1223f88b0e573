"""The bf16 accuracy check: a model may run in bf16 only if its validation AUROC stays within tolerance of fp32.

The result is stored in the bundle (``extra.precision_check.bf16``); the inference engine reads it and
uses bf16 under ``--precision auto`` only when it says ``ok``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from cxrkit.core.preprocess import Preprocessing
from cxrkit.core.task import LabelSpace
from cxrkit.data.table import CxrTable
from cxrkit.evaluation import evaluate_predictions
from cxrkit.models.engine import BF16_AUROC_TOLERANCE, choose_device, native_bf16
from cxrkit.models.inference import predict_proba
from cxrkit.training.module import headline_auroc

log = logging.getLogger(__name__)


def bf16_check(
    model: torch.nn.Module,
    space: LabelSpace,
    val: CxrTable,
    prep: Preprocessing,
    probs_fp32: np.ndarray | None = None,
    tolerance: float = BF16_AUROC_TOLERANCE,
) -> dict[str, Any]:
    """Compare validation AUROC under bf16 autocast with fp32; ``ok`` when within ``tolerance``.

    Skipped (``ok`` None) where this machine has no native bf16: emulated bf16 would not be used anyway.
    """
    device = choose_device()
    if not native_bf16(device):
        return {"ok": None, "skipped": f"no native bf16 on the checking machine ({device.type})"}
    if probs_fp32 is None:
        probs_fp32 = predict_proba(model, space, val, prep, precision="fp32")
    probs_bf16 = predict_proba(model, space, val, prep, precision="bf16")
    a32 = headline_auroc(evaluate_predictions(space, val.labels, probs_fp32, n_boot=0))
    a16 = headline_auroc(evaluate_predictions(space, val.labels, probs_bf16, n_boot=0))
    delta = abs(a16 - a32)
    result = {
        "ok": bool(delta <= tolerance),
        "auroc_fp32": round(a32, 6),
        "auroc_bf16": round(a16, 6),
        "auroc_delta": round(delta, 6),
        "tolerance": tolerance,
        "max_abs_diff_proba": round(float(np.abs(probs_bf16 - probs_fp32).max()), 6) if len(probs_fp32) else 0.0,
        "n": len(val),
        "device": device.type,
    }
    log.info("bf16 check: AUROC fp32 %.4f, bf16 %.4f (%s)", a32, a16, "ok" if result["ok"] else "fp32 kept")
    return result
