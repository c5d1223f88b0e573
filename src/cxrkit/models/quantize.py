"""INT8 on the CPU: ONNX Runtime static quantization (QDQ) of a bundle, calibrated on its validation split.

``quantize_bundle`` exports the bundle to ONNX (fp32), calibrates activation ranges on preprocessed
validation images and writes ``model.int8.onnx`` (weights int8 per channel, activations uint8, QDQ
format so ONNX Runtime fuses them into integer kernels: VNNI/AMX where the CPU has them). The file
carries the weights' sha256 like every export, so it is never paired with another model.

Whether the engine may use it (``--backend onnx-int8``) is decided by the accuracy check in
``cxrkit.training.precision.run_int8_check``: validation AUROC within ``INT8_AUROC_TOLERANCE`` of fp32 and
at least ``DECISION_AGREEMENT_MIN`` of the images with the same findings at the bundle's thresholds.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from cxrkit.core.files import atomic_path
from cxrkit.models.bundle import Bundle
from cxrkit.models.onnx_export import INT8_FILE, META_CONFIG, META_SHA, _require_onnx, export_onnx

log = logging.getLogger(__name__)

INT8_AUROC_TOLERANCE = 0.005
DECISION_AGREEMENT_MIN = 0.99
CALIBRATION_IMAGES = 256


def int8_path(bundle: Bundle) -> Path:
    return Path(bundle.path) / INT8_FILE


def _reader(batches: Iterable[np.ndarray]) -> Any:
    from onnxruntime.quantization import CalibrationDataReader

    class _Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self._it: Iterator[np.ndarray] = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self._it, None)
            return None if x is None else {"image": np.ascontiguousarray(x, np.float32)}

    return _Batches()


def quantize_onnx(fp32: str | Path, out: str | Path, batches: Iterable[np.ndarray]) -> Path:
    """Statically quantize an fp32 export (QDQ, per-channel int8 weights, uint8 activations), calibrated
    on ``batches`` (preprocessed N x C x H x W arrays); the cxrkit metadata is carried over."""
    onnx, _ = _require_onnx()
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out = Path(out)
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)  # fold/fuse first: fewer Q/DQ pairs
        q = Path(tmp) / "int8.onnx"
        quantize_static(
            str(pre),
            str(q),
            _reader(batches),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
        source = {p.key: p.value for p in onnx.load(str(fp32), load_external_data=False).metadata_props}
        proto = onnx.load(str(q))
        del proto.metadata_props[:]
        for key in (META_CONFIG, META_SHA):
            if key in source:
                entry = proto.metadata_props.add()
                entry.key, entry.value = key, source[key]
        with atomic_path(out) as tmp_out:
            onnx.save(proto, str(tmp_out))
    return out


def quantize_bundle(bundle: Bundle, batches: Iterable[np.ndarray], out: str | Path | None = None) -> Path:
    """Export ``bundle`` and write its INT8 model (default: ``<bundle>/model.int8.onnx``)."""
    out = Path(out) if out is not None else int8_path(bundle)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        export_onnx(bundle, fp32)
        quantize_onnx(fp32, out, batches)
    log.info("wrote the INT8 model %s", out)
    return out


def calibration_batches(table: Any, bundle: Bundle, n: int = CALIBRATION_IMAGES, batch_size: int = 32) -> list:
    """Preprocessed arrays of up to ``n`` rows of ``table`` (evenly spread), for calibration."""
    from cxrkit.models.engine import table_loader

    if len(table) > n:
        table = table.subset(np.linspace(0, len(table) - 1, n).round().astype(int))
    loader = table_loader(table, bundle.preprocessing, batch_size, num_workers=0)
    return [x.numpy() for x, *_ in loader]
