"""ONNX export of a bundle and the ONNX Runtime runner behind ``--backend onnx``.

The exported graph has one input ``image`` (N x C x H x W, preprocessed as the bundle says, dynamic N)
and two outputs, ``logits`` and ``embedding`` (penultimate features), so predict, evaluate and index
building all run on it. The bundle's ``config.json`` travels inside the file (metadata ``cxrkit_config``)
and the weights' sha256 as ``cxrkit_weights_sha256``, so an export is never paired with the wrong model.
Every export is checked against PyTorch on random input before it is kept.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cxrkit.core.errors import BundleError, ConfigError
from cxrkit.core.files import atomic_path
from cxrkit.core.settings import cxrkit_home
from cxrkit.models.bundle import CONFIG_FILE, Bundle
from cxrkit.models.heads import logits_to_proba, output_layer
from cxrkit.models.registry import embed

log = logging.getLogger(__name__)

MAX_ABS_DIFF = 1e-4  # probabilities, ONNX Runtime vs PyTorch fp32
META_CONFIG = "cxrkit_config"
META_SHA = "cxrkit_weights_sha256"
INT8_FILE = "model.int8.onnx"  # the INT8 model beside a bundle's weights (written by cxr threshold)


def onnx_cache_path(bundle: Bundle) -> Path:
    """Where the ONNX backend caches a bundle's fp32 export (one per weights fingerprint)."""
    return cxrkit_home() / "onnx" / f"{bundle.fingerprint[:16]}.onnx"


class _LogitsAndEmbedding(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = embed(self.model, x, grad=True)
        return output_layer(self.model)(feats), feats


def _require_onnx() -> tuple[Any, Any]:
    try:
        import onnx
        import onnxruntime
    except ImportError as err:  # pragma: no cover - both are dependencies
        raise ConfigError(
            f"ONNX export needs onnx and onnxruntime ({err}). Fix: pip install onnx onnxruntime."
        ) from None
    return onnx, onnxruntime


def export_onnx(bundle: Bundle, out: str | Path, opset: int = 18, image_size: int | None = None) -> dict[str, Any]:
    """Export ``bundle`` to ``out`` (atomically), verify it against PyTorch, return what was checked.

    ``image_size`` fixes another input size than the bundle's (benchmarks); cxrkit itself always feeds
    the bundle's size, and the ONNX backend refuses an export of another size.
    """
    onnx, _ = _require_onnx()
    out = Path(out)
    prep = bundle.preprocessing
    model = _LogitsAndEmbedding(bundle.model.float().eval().to("cpu", memory_format=torch.contiguous_format))
    size = image_size or prep.image_size
    example = torch.rand(2, prep.in_chans, size, size) * 2 - 1
    with atomic_path(out) as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                model,
                (example,),
                dynamo=True,
                input_names=["image"],
                output_names=["logits", "embedding"],
                dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
                opset_version=opset,
                verbose=False,
            )
        proto = program.model_proto
        config = (bundle.path / CONFIG_FILE).read_text(encoding="utf-8") if bundle.path else "{}"
        for key, value in ((META_CONFIG, config), (META_SHA, bundle.fingerprint)):
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(proto, str(tmp))
        check = verify_onnx(bundle, tmp, image_size=size)
    log.info("exported %s to %s (max |dp| %.2g)", bundle.path, out, check["max_abs_diff_proba"])
    return {"onnx": str(out), "sha256": bundle.fingerprint, **check}


def verify_onnx(bundle: Bundle, path: str | Path, n: int = 3, image_size: int | None = None) -> dict[str, Any]:
    """Run ``path`` and the bundle on the same random batch; raise if probabilities differ by > MAX_ABS_DIFF.

    The reference is the fp32 forward pass the engine runs (features, then the output layer), without
    test-time augmentation: the export holds one forward pass, and the engine averages views around it.
    """
    prep = bundle.preprocessing
    size = image_size or prep.image_size
    x = torch.rand(n, prep.in_chans, size, size, generator=torch.Generator().manual_seed(0))
    x = x * 2 - 1
    space = bundle.label_space
    model = bundle.model.float().eval().to("cpu")
    with torch.inference_mode():
        p_torch = logits_to_proba(output_layer(model)(embed(model, x)), space).numpy()
    runner = OnnxRunner(path, expected_sha=bundle.fingerprint)
    logits, _ = runner.run(x.numpy())
    p_onnx = logits_to_proba(torch.from_numpy(np.asarray(logits, np.float32)), space).numpy()
    diff = float(np.abs(p_onnx - p_torch).max())
    if not diff <= MAX_ABS_DIFF:
        raise BundleError(
            f"The ONNX export {path} differs from PyTorch by {diff:.2g} (> {MAX_ABS_DIFF}) in probability. "
            "Fix: report this model's architecture; use --backend torch meanwhile."
        )
    return {"max_abs_diff_proba": diff, "checked_images": n}


class OnnxRunner:
    """An ONNX Runtime session over an exported bundle (CPU; threads as torch's intra-op setting)."""

    def __init__(self, path: str | Path, expected_sha: str | None = None) -> None:
        _, ort = _require_onnx()
        self.path = Path(path)
        if not self.path.is_file():
            raise BundleError(f"{self.path}: no such ONNX file. Fix: cxr export --model NAME --onnx {self.path}.")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = torch.get_num_threads()
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types
            raise BundleError(f"{self.path}: not a loadable ONNX model ({err}). Fix: export it again.") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        self.sha = meta.get(META_SHA)
        self.config = json.loads(meta[META_CONFIG]) if META_CONFIG in meta else None
        if expected_sha is not None and self.sha != expected_sha:
            raise BundleError(
                f"{self.path} was exported from another model (sha256 {str(self.sha)[:12]}..., expected "
                f"{expected_sha[:12]}...). Fix: export this bundle again with cxr export."
            )

    @classmethod
    def for_bundle(cls, bundle: Bundle, path: str | Path | None = None) -> OnnxRunner:
        """The given export, else the cached one (exported on first use)."""
        if path is not None:
            return cls(path, expected_sha=bundle.fingerprint)
        cached = onnx_cache_path(bundle)
        if not cached.is_file():
            cached.parent.mkdir(parents=True, exist_ok=True)
            log.info("exporting %s to ONNX (once per model): %s", bundle.path.name, cached)
            export_onnx(bundle, cached)
        return cls(cached, expected_sha=bundle.fingerprint)

    @property
    def input_size(self) -> int | None:
        """The exported square input size (None where it is dynamic)."""
        size = self.session.get_inputs()[0].shape[-1]
        return size if isinstance(size, int) else None

    def run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits, feats = self.session.run(["logits", "embedding"], {"image": np.ascontiguousarray(x, np.float32)})
        return logits, feats
