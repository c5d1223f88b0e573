"""Lung segmentation models: a U-Net on the offline EfficientNet-Lite0 encoder, its bundle and inference.

Why this architecture: ``segmentation-models-pytorch`` gives a tested U-Net around any timm encoder
("tu-<name>"), so the encoder can start from the offline EfficientNet-Lite0 ImageNet weights that
cxrkit already ships (no download). Lite0 has no squeeze-excitation and no swish, so it runs fast on
a CPU (about 50 ms for a 256 px image on one core) and its U-Net is 3.8 M parameters (15 MB in fp32).

A segmentation bundle uses the classifier bundles' layout (``model.safetensors`` + ``config.json`` +
``MODEL_CARD.md``) with ``"kind": "segmentation"`` in its config; ``load_segmenter`` reads it.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import cxrkit
from cxrkit.core.errors import BundleError, ConfigError, UnknownNameError
from cxrkit.core.files import atomic_dir, sha256_file
from cxrkit.core.jsonable import json_text
from cxrkit.core.preprocess import Preprocessing
from cxrkit.models.bundle import CARD_FILE, CONFIG_FILE, WEIGHTS_FILE, resolve_bundle
from cxrkit.models.pretrained import apply_state_dict, efficientnet_lite0_imagenet_state_dict

SEGMENTATION_KIND = "segmentation"
SEG_ARCHS = {"unet_efficientnet_lite0": "tu-tf_efficientnet_lite0"}
# Below this fraction of the image, a mask is "no lungs": a lateral view or not a chest X-ray.
# Frontal views in the V7 masks cover 0.15-0.5 of the image; lateral views have empty masks.
MIN_LUNG_FRACTION = 0.03
NO_LUNGS_WARNING = (
    "no lungs found (lung area {fraction:.1%} of the image): a lateral view, or not a frontal chest X-ray. "
    "Lung-based outputs for this image are meaningless."
)


def create_segmenter(
    arch: str = "unet_efficientnet_lite0",
    weights: str = "imagenet",
    decoder_channels: Sequence[int] = (128, 64, 32, 16, 8),
) -> nn.Module:
    """A 1-channel-in, 1-logit-out U-Net; ``weights="imagenet"`` loads the offline Lite0 encoder weights.

    Raises:
        UnknownNameError: ``arch`` is not a segmentation architecture.
        ConfigError: ``weights`` is not imagenet or none.
    """
    import segmentation_models_pytorch as smp

    if arch not in SEG_ARCHS:
        raise UnknownNameError("segmentation architecture", arch, sorted(SEG_ARCHS))
    if weights not in ("imagenet", "none"):
        raise ConfigError(f"Segmenter weights must be 'imagenet' or 'none', got {weights!r}.")
    model = smp.Unet(
        SEG_ARCHS[arch], encoder_weights=None, in_channels=1, classes=1, decoder_channels=tuple(decoder_channels)
    )
    if weights == "imagenet":
        encoder = model.encoder.model  # timm features_only EfficientNet: the classifier keys are absent
        keys = set(encoder.state_dict())
        sd = {k: v for k, v in efficientnet_lite0_imagenet_state_dict().items() if k in keys}
        apply_state_dict(encoder, sd, first_conv="conv_stem", classifier=None, source="efficientnet-lite0 (offline)")
    return model


@dataclass
class Segmenter:
    """A loaded segmentation bundle. ``masks``/``probabilities`` take images of any size."""

    path: Path
    model: nn.Module
    preprocessing: Preprocessing
    threshold: float
    metrics: dict[str, Any]
    fingerprint: str
    config: dict[str, Any] = field(default_factory=dict)

    @torch.inference_mode()
    def probabilities(self, images: Sequence[np.ndarray], batch_size: int = 16) -> list[np.ndarray]:
        """Lung probability maps, each at its image's size, for float32 [0,1] HxW images."""
        out: list[np.ndarray] = []
        size, prep = self.preprocessing.image_size, self.preprocessing
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            x = np.stack([_resize(np.asarray(im, np.float32), size, cv2.INTER_AREA) for im in chunk])
            t = (torch.from_numpy(x)[:, None] - prep.mean) / prep.std
            t = t.contiguous(memory_format=torch.channels_last)
            probs = torch.sigmoid(self.model(t)).float()
            for im, p in zip(chunk, probs, strict=True):
                h, w = np.shape(im)
                full = F.interpolate(p[None], size=(h, w), mode="bilinear", align_corners=False)[0, 0]
                out.append(full.numpy())
        return out

    def masks(self, images: Sequence[np.ndarray], batch_size: int = 16, clean: bool = True) -> list[np.ndarray]:
        """Boolean lung masks at each image's size; ``clean`` keeps the two largest regions, holes filled."""
        masks = [p >= self.threshold for p in self.probabilities(images, batch_size)]
        return [clean_mask(m) for m in masks] if clean else masks


def _resize(img: np.ndarray, size: int, interpolation: int) -> np.ndarray:
    if img.shape == (size, size):
        return img
    return cv2.resize(img, (size, size), interpolation=interpolation)


def clean_mask(mask: np.ndarray, keep: int = 2, min_relative: float = 0.1) -> np.ndarray:
    """Keep the ``keep`` largest connected regions (the two lungs) above ``min_relative`` of the largest,
    and fill their holes: removes specks the network marks in the abdomen or outside the body."""
    m = np.ascontiguousarray(mask, dtype=np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    if n <= 1:
        return m.astype(bool)
    areas = stats[1:, cv2.CC_STAT_AREA]
    order = np.argsort(areas)[::-1][:keep]
    kept = [i + 1 for i in order if areas[i] >= min_relative * areas[order[0]]]
    out = np.isin(labels, kept).astype(np.uint8)
    contours, _ = cv2.findContours(out, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(out, contours, -1, 1, thickness=cv2.FILLED)
    return out.astype(bool)


def describe_mask(mask: np.ndarray) -> dict[str, Any]:
    """Lung area fraction, bounding box ``[x0, y0, x1, y1]`` (pixels, exclusive end) and a no-lungs warning."""
    mask = np.asarray(mask, bool)
    fraction = float(mask.mean()) if mask.size else 0.0
    ys, xs = np.nonzero(mask)
    box = [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1] if len(xs) else None
    found = fraction >= MIN_LUNG_FRACTION
    return {
        "lungs_found": found,
        "lung_fraction": round(fraction, 4),
        "bbox": box if found else None,
        "warning": None if found else NO_LUNGS_WARNING.format(fraction=fraction),
    }


def save_segmenter(
    out_dir: str | Path,
    model: nn.Module,
    arch: str,
    preprocessing: Preprocessing,
    threshold: float,
    metrics: Mapping[str, Any],
    data_summary: Mapping[str, Any],
    license: str,
    model_kwargs: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a segmentation bundle atomically (same files as a classifier bundle; ``kind`` segmentation)."""
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    config: dict[str, Any] = {
        "format_version": 1,
        "kind": SEGMENTATION_KIND,
        "architecture": arch,
        "model_kwargs": dict(model_kwargs or {}),
        "classes": ["lung"],
        "preprocessing": preprocessing.to_dict(),
        "threshold": float(threshold),
        "metrics": dict(metrics),
        "data_summary": dict(data_summary),
        "license": license,
        "code_version": cxrkit.__version__,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "extra": dict(extra or {}),
    }
    with atomic_dir(out_dir) as tmp:
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": "pt", "architecture": arch})
        config["weights_sha256"] = sha256_file(tmp / WEIGHTS_FILE)
        text = json_text(config)
        (tmp / CONFIG_FILE).write_text(text, encoding="utf-8")
        (tmp / CARD_FILE).write_text(render_segmenter_card(config), encoding="utf-8")
    return out_dir


def is_segmenter_bundle(path: str | Path) -> bool:
    """True when the folder's config.json says ``"kind": "segmentation"``."""
    cfg = Path(path) / CONFIG_FILE
    try:
        return json.loads(cfg.read_text(encoding="utf-8")).get("kind") == SEGMENTATION_KIND
    except (OSError, ValueError, AttributeError):
        return False


def load_segmenter(name_or_path: str | Path = "lungs") -> Segmenter:
    """Load a segmentation bundle (a folder, or a shipped/installed name such as ``lungs``), in eval mode.

    Raises:
        BundleError: not a segmentation bundle, weights changed (sha256), or they do not fit the architecture.
    """
    from safetensors.torch import load_file

    try:
        path = resolve_bundle(name_or_path)
    except UnknownNameError:
        from cxrkit.models.bundle import list_bundles

        raise UnknownNameError("segmentation bundle", str(name_or_path), list_bundles("segmentation")) from None
    try:
        config = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise BundleError(f"{path / CONFIG_FILE} cannot be read as JSON ({err}). Fix: re-export the bundle.") from err
    if config.get("kind") != SEGMENTATION_KIND:
        raise BundleError(
            f"{path} is a classifier bundle, not a segmentation model. Fix: pass a segmenter such as 'lungs'."
        )
    weights = path / WEIGHTS_FILE
    digest = sha256_file(weights) if weights.is_file() else None
    if digest != config.get("weights_sha256"):
        raise BundleError(
            f"{weights} is missing or its sha256 differs from config.json: the weights were changed or corrupted. "
            "Fix: restore the bundle folder."
        )
    model = create_segmenter(config["architecture"], weights="none", **config.get("model_kwargs", {}))
    try:
        model.load_state_dict(load_file(str(weights), device="cpu"), strict=True)
    except RuntimeError as err:
        raise BundleError(f"{weights} does not fit {config['architecture']!r}: {str(err)[:300]}.") from err
    model.eval().to(memory_format=torch.channels_last)
    return Segmenter(
        path=path,
        model=model,
        preprocessing=Preprocessing.from_dict(config["preprocessing"]),
        threshold=float(config.get("threshold", 0.5)),
        metrics=dict(config.get("metrics") or {}),
        fingerprint=str(digest),
        config=config,
    )


def render_segmenter_card(config: Mapping[str, Any]) -> str:
    """MODEL_CARD.md of a segmentation bundle."""
    prep = config["preprocessing"]
    val = (config.get("metrics") or {}).get("validation", {})
    data = config.get("data_summary") or {}
    rows = "\n".join(f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in val.items())
    return f"""# Model card: {Path(str(config.get("extra", {}).get("name", "lungs")))} (lung segmentation)

- **Architecture**: U-Net (segmentation-models-pytorch) on an EfficientNet-Lite0 encoder (`{config["architecture"]}`,
  encoder initialised from the offline ImageNet weights), 1 grey channel in, 1 lung logit out.
- **Input**: the grey image squashed to {prep["image_size"]} x {prep["image_size"]}, scaled by mean {prep["mean"]},
  std {prep["std"]}; the probability map is resized back to the image's size and thresholded at
  {config.get("threshold", 0.5)}; the two largest regions are kept and their holes filled.
- **Intended use**: lung masks, lung boxes and lung area of frontal (PA/AP) adult chest X-rays, for cropping,
  masking and shortcut audits. Research use only, not a medical device.
- **Out of scope**: lateral views (the model returns an (almost) empty mask, and cxrkit then warns "no lungs found").
  Lungs here follow V7 Labs' convention: they include the lung behind the heart.

## Training data
{json.dumps(data, indent=2, default=str)}

## Validation (patients never seen in training)
| Metric | Value |
|---|---|
{rows}

## License
{config.get("license", "")}

Created {config.get("created")} by cxrkit {config.get("code_version")}.
"""
