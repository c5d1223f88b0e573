"""Reduced-precision accuracy checks: a model may run in bf16 (or INT8) only if, on its validation split,
its AUROC stays within tolerance of fp32 *and* its decisions stay put: at least ``DECISION_AGREEMENT_MIN``
of the images get the same findings at the bundle's thresholds (AUROC alone let bf16 move probabilities
by up to 0.26 around a 0.05 threshold and still pass).

The results are stored in the bundle (``extra.precision_check.bf16`` / ``.int8``); the inference engine
uses bf16 under ``--precision auto`` only when its check says ``ok``, and refuses ``--backend onnx-int8``
unless the INT8 check does.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cxrkit.core.decisions import decision_matrix
from cxrkit.core.preprocess import Preprocessing
from cxrkit.core.task import LabelSpace
from cxrkit.data.table import CxrTable
from cxrkit.evaluation import evaluate_predictions, headline_auroc
from cxrkit.models.bundle import Bundle
from cxrkit.models.engine import BF16_AUROC_TOLERANCE, Engine, InferenceOptions, choose_device, native_bf16
from cxrkit.models.quantize import DECISION_AGREEMENT_MIN, INT8_AUROC_TOLERANCE

log = logging.getLogger(__name__)


def decision_agreement(
    space: LabelSpace, probs_a: np.ndarray, probs_b: np.ndarray, thresholds: dict[str, float] | None
) -> float:
    """Fraction of images with the same findings at the bundle's thresholds (``decide``'s rule)."""
    if len(probs_a) == 0:
        return 1.0
    same = (decision_matrix(space, probs_a, thresholds) == decision_matrix(space, probs_b, thresholds)).all(axis=1)
    return float(same.mean())


def _compare(
    space: LabelSpace, val: CxrTable, p32: np.ndarray, p_low: np.ndarray, thresholds: dict[str, float] | None
) -> dict[str, Any]:
    a32 = headline_auroc(evaluate_predictions(space, val.labels, p32, n_boot=0))
    alow = headline_auroc(evaluate_predictions(space, val.labels, p_low, n_boot=0))
    return {
        "auroc_fp32": round(a32, 6),
        "auroc_low": round(alow, 6),
        "auroc_delta": round(abs(alow - a32), 6),
        "decision_agreement": round(decision_agreement(space, p32, p_low, thresholds), 6),
        "agreement_min": DECISION_AGREEMENT_MIN,
        "max_abs_diff_proba": round(float(np.abs(p_low - p32).max()), 6) if len(p32) else 0.0,
        "n": len(val),
    }


def validation_probabilities(
    model: torch.nn.Module,
    space: LabelSpace,
    prep: Preprocessing,
    val: CxrTable,
    precision: str = "fp32",
    tta: str = "none",
    num_workers: int | None = None,
) -> np.ndarray:
    """Probabilities (N x outputs) of a trained model on its validation table, through the inference engine."""
    options = InferenceOptions(precision=precision, batch_size=64, num_workers=num_workers)
    return np.asarray(Engine.for_model(model, space, prep, tta=tta, options=options).run_table(val))


def run_bf16_check(
    model: torch.nn.Module,
    space: LabelSpace,
    val: CxrTable,
    prep: Preprocessing,
    probs_fp32: np.ndarray | None = None,
    tolerance: float = BF16_AUROC_TOLERANCE,
    thresholds: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Compare validation AUROC and decisions (at ``thresholds``, default 0.5) under bf16 autocast with
    fp32; ``ok`` when the AUROC is within ``tolerance`` and the decisions agree on enough images.

    Skipped (``ok`` None) where this machine has no native bf16: emulated bf16 would not be used anyway.
    """
    device = choose_device()
    if not native_bf16(device):
        return {"ok": None, "skipped": f"no native bf16 on the checking machine ({device.type})"}
    if probs_fp32 is None:
        probs_fp32 = validation_probabilities(model, space, prep, val, precision="fp32")
    probs_bf16 = validation_probabilities(model, space, prep, val, precision="bf16")
    c = _compare(space, val, probs_fp32, probs_bf16, thresholds)
    ok = c["auroc_delta"] <= tolerance and c["decision_agreement"] >= DECISION_AGREEMENT_MIN
    result = {"ok": bool(ok), "auroc_fp32": c["auroc_fp32"], "auroc_bf16": c.pop("auroc_low"), **c}
    result.update(tolerance=tolerance, device=device.type)
    log.info("bf16 check: AUROC fp32 %.4f, bf16 %.4f, same decisions %.4f (%s)", result["auroc_fp32"],
             result["auroc_bf16"], c["decision_agreement"], "ok" if ok else "fp32 kept")  # fmt: skip
    return result


def run_int8_check(
    bundle: Bundle,
    val: CxrTable,
    probs_fp32: np.ndarray,
    thresholds: dict[str, float] | None = None,
    out: str | None = None,
    tolerance: float = INT8_AUROC_TOLERANCE,
) -> dict[str, Any]:
    """Quantize ``bundle`` to INT8 calibrated on ``val`` (``cxrkit.models.quantize``), run it on all of
    ``val`` and compare with the fp32 probabilities; the INT8 model stays at ``out`` (default: in the
    bundle folder) only when ``ok``. Skipped (``ok`` None) when ONNX export or quantization fails."""
    from cxrkit.models.engine import Engine, InferenceOptions
    from cxrkit.models.quantize import calibration_batches, int8_path, quantize_bundle

    dest = int8_path(bundle) if out is None else Path(out)
    try:
        quantize_bundle(bundle, calibration_batches(val, bundle), dest)
        engine = Engine(bundle, InferenceOptions(backend="onnx", onnx_path=str(dest), num_workers=0))
        probs_int8 = np.asarray(engine.run_table(val, "proba"))
    except Exception as err:  # an architecture the exporter or quantizer cannot take
        dest.unlink(missing_ok=True)
        log.warning("INT8 check skipped: %s", err)
        return {"ok": None, "skipped": f"{type(err).__name__}: {str(err)[:300]}"}
    c = _compare(bundle.label_space, val, probs_fp32, probs_int8, thresholds)
    ok = c["auroc_delta"] <= tolerance and c["decision_agreement"] >= DECISION_AGREEMENT_MIN
    result = {"ok": bool(ok), "auroc_fp32": c["auroc_fp32"], "auroc_int8": c.pop("auroc_low"), **c}
    result.update(tolerance=tolerance, calibration="MinMax, QDQ, per-channel int8 weights, uint8 activations")
    if not ok:
        dest.unlink(missing_ok=True)  # a refused model is not kept next to the bundle
    log.info("INT8 check: AUROC fp32 %.4f, int8 %.4f, same decisions %.4f (%s)", result["auroc_fp32"],
             result["auroc_int8"], c["decision_agreement"], "ok" if ok else "refused")  # fmt: skip
    return result
