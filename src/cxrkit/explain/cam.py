"""Class activation maps (Grad-CAM and friends) for cxrkit models, at the original image resolution.

pytorch-grad-cam does the work; this module adds what a chest X-ray model needs around it: the
target layer of every registered backbone (``cam_target_layer``), targets for binary (one sigmoid
output), multiclass and multilabel heads, the bundle's resize policy undone (a letterbox's padding is
cropped back out), and the model left exactly as it was found (hooks, train/eval mode,
``requires_grad`` and ``.grad``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from cxrkit.core.decisions import decide
from cxrkit.core.errors import ConfigError, UnknownNameError
from cxrkit.core.preprocess import Preprocessing
from cxrkit.core.task import LabelSpace, TaskType
from cxrkit.data.transforms import ImageTransform
from cxrkit.explain.boxes import cam_to_boxes
from cxrkit.models.bundle import Bundle
from cxrkit.models.engine import Engine, InferenceOptions
from cxrkit.models.registry import cam_target_layer

log = logging.getLogger(__name__)

# Canonical method names (what the CLI shows) -> pytorch-grad-cam class name.
METHODS: dict[str, str] = {
    "gradcam": "GradCAM",
    "gradcam++": "GradCAMPlusPlus",
    "hirescam": "HiResCAM",
    "scorecam": "ScoreCAM",
    "eigencam": "EigenCAM",
    "layercam": "LayerCAM",
    "xgradcam": "XGradCAM",
}
_ALIASES = {"gradcampp": "gradcam++", "gradcamplusplus": "gradcam++"}


def list_methods() -> list[str]:
    """Names ``compute_cams`` accepts (case, '-', '_' and spaces are ignored)."""
    return list(METHODS)


def normalise_method(method: str) -> str:
    """Canonical method name.

    Raises:
        UnknownNameError: not a supported method (the message lists them).
    """
    key = "".join(ch for ch in str(method).lower() if ch not in "-_ ")
    key = _ALIASES.get(key, key)
    if key not in METHODS:
        raise UnknownNameError("CAM method", str(method), METHODS)
    return key


@dataclass
class CamResult:
    """The explanation of one image.

    Attributes:
        cam: float32 (H, W) in [0, 1], the same size as the decoded input image.
        target: the class explained.
        probability: the model's probability for ``target``.
        boxes: ``cam_to_boxes(cam)`` in image pixels, best first.
        method: the CAM method used.
        probabilities: every class's probability (binary: both classes).
    """

    cam: np.ndarray
    target: str
    probability: float
    boxes: list[dict[str, Any]] = field(default_factory=list)
    method: str = "gradcam"
    probabilities: dict[str, float] = field(default_factory=dict)


def resolve_target(label_space: LabelSpace, name: str) -> int:
    """Column of class ``name`` (case-insensitive).

    Raises:
        UnknownNameError: no such class; the message lists the model's classes.
    """
    try:
        return label_space.index(name)
    except UnknownNameError:
        raise UnknownNameError("target class", name, label_space.classes) from None


def predicted_class(probs: np.ndarray, label_space: LabelSpace, thresholds: dict[str, float] | None = None) -> int:
    """The class a CAM explains by default: the model's call at its thresholds (exclusive tasks), else the
    most probable finding."""
    if label_space.exclusive:
        return int(decide(label_space, np.asarray(probs)[None, :], thresholds)[0])
    return int(np.argmax(probs))


def cam_target(label_space: LabelSpace, class_index: int) -> Any:
    """The pytorch-grad-cam target that scores ``classes[class_index]``.

    A binary model has one logit z for the positive class; the negative class's probability is
    ``sigmoid(-z)``, so its target is ``-z`` (``BinaryClassifierOutputTarget(0)``). Multiclass (pre-softmax)
    and multilabel (pre-sigmoid) heads: the logit of that output (``ClassifierOutputTarget``).
    """
    from pytorch_grad_cam.utils.model_targets import BinaryClassifierOutputTarget, ClassifierOutputTarget

    if label_space.task is TaskType.BINARY:
        return BinaryClassifierOutputTarget(class_index)
    return ClassifierOutputTarget(class_index)


def letterbox_geometry(h: int, w: int, size: int) -> tuple[int, int, int, int]:
    """(top, left, height, width) of an h x w image inside its ``size`` letterbox.

    Mirrors ``cxrkit.data.transforms.resize(..., 'letterbox')``.
    """
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    return (size - nh) // 2, (size - nw) // 2, nh, nw


def cam_to_original(cam: np.ndarray, shape: tuple[int, int], prep: Preprocessing) -> np.ndarray:
    """Map a CAM on the model input (S x S) back onto the original image (H x W).

    'squash' is undone by resizing; 'letterbox' by cropping the padding out, then resizing. The result
    is rescaled so that its maximum is 1 (unless it is all zero): the maximum may have been in the
    padding that was cropped away.
    """
    h, w = int(shape[0]), int(shape[1])
    cam = np.asarray(cam, dtype=np.float32)
    if prep.resize == "letterbox":
        top, left, nh, nw = letterbox_geometry(h, w, cam.shape[0])
        cam = cam[top : top + nh, left : left + nw]
    if cam.shape != (h, w):
        cam = cv2.resize(cam, (w, h), interpolation=cv2.INTER_LINEAR)
    cam = np.clip(np.nan_to_num(cam, nan=0.0), 0.0, None)
    peak = float(cam.max()) if cam.size else 0.0
    if peak > 0:
        cam = cam / peak
    return np.clip(cam, 0.0, 1.0).astype(np.float32)


def _cam_class(method: str) -> type:
    import pytorch_grad_cam

    name = METHODS[method]
    if name == "ScoreCAM":
        return _quiet_scorecam()
    if name == "EigenCAM":
        return _lean_eigencam()
    return getattr(pytorch_grad_cam, name)


def eigen_projection(activations: np.ndarray) -> np.ndarray:
    """Projection of each (C, H, W) activation on its first principal component -> (N, H, W).

    What pytorch-grad-cam's ``get_2d_projection`` computes, with a thin SVD (its full SVD builds an
    (H*W) x (H*W) matrix, 1.2 GB for the small CNNs' 111 x 111 last feature map at 224 px), and with
    the sign of the axis fixed.
    """
    acts = np.nan_to_num(np.asarray(activations, dtype=np.float32))
    out = []
    for a in acts:
        flat = a.reshape(a.shape[0], -1).T
        flat = flat - flat.mean(axis=0)
        _, _, vt = np.linalg.svd(flat, full_matrices=False)
        proj = flat @ vt[0]
        # A principal axis has no sign; the library's is arbitrary per image, so the map can come out
        # inverted. Orient it to agree with the mean activation (where the layer fires most).
        if float(proj @ flat.mean(axis=1)) < 0:
            proj = -proj
        out.append(proj.reshape(a.shape[1:]))
    return np.asarray(out, dtype=np.float32)


def _lean_eigencam() -> type:
    from pytorch_grad_cam import EigenCAM

    class LeanEigenCAM(EigenCAM):
        def get_cam_image(self, input_tensor, target_layer, target_category, activations, grads, eigen_smooth):
            return eigen_projection(activations)

    return LeanEigenCAM


def _quiet_scorecam() -> type:
    """ScoreCAM without its tqdm progress bar (library code writes nothing to the terminal)."""
    from pytorch_grad_cam import ScoreCAM

    class QuietScoreCAM(ScoreCAM):
        batch_size = 32

        def get_cam_weights(self, input_tensor, target_layer, targets, activations, grads):
            with torch.no_grad():
                acts = torch.from_numpy(activations).to(self.device)
                up = nn.functional.interpolate(acts, size=input_tensor.shape[-2:], mode="bilinear", align_corners=True)
                flat = up.flatten(2)
                lo, hi = flat.min(dim=-1).values, flat.max(dim=-1).values
                up = (up - lo[..., None, None]) / (hi - lo + 1e-8)[..., None, None]
                masked = input_tensor[:, None] * up[:, :, None]  # N x K x C x H x W
                scores = []
                for target, stack in zip(targets, masked, strict=True):
                    for i in range(0, stack.shape[0], self.batch_size):
                        out = self.model(stack[i : i + self.batch_size])
                        scores.extend(float(target(o)) for o in out)
                weights = torch.tensor(scores).view(activations.shape[0], activations.shape[1])
                return torch.softmax(weights, dim=-1).numpy()

    return QuietScoreCAM


@contextlib.contextmanager
def model_state_preserved(model: nn.Module) -> Iterator[None]:
    """Restore ``model``'s train/eval mode, every parameter's ``requires_grad`` and ``.grad`` on exit."""
    was_training = model.training
    saved = [(p, p.requires_grad, p.grad) for p in model.parameters()]
    try:
        yield
    finally:
        for p, flag, grad in saved:
            p.requires_grad_(flag)
            p.grad = grad
        model.train(was_training)


@contextlib.contextmanager
def _cam_extractor(method: str, model: nn.Module, layer: nn.Module) -> Iterator[Any]:
    # Not `with GradCAM(...)`: the library's __exit__ swallows IndexError (and prints); release
    # explicitly instead, whatever happens.
    cam = _cam_class(method)(model=model, target_layers=[layer])
    try:
        yield cam
    finally:
        cam.activations_and_grads.release()


def _targets_per_image(target: str | Sequence[str | None] | None, n: int) -> list[str | None]:
    if target is None or isinstance(target, str):
        return [target] * n
    targets = list(target)
    if len(targets) != n:
        raise ConfigError(f"{len(targets)} targets given for {n} images; give one target, or one per image.")
    return targets


def compute_cams_for_model(
    model: nn.Module,
    label_space: LabelSpace,
    preprocessing: Preprocessing,
    images: Sequence[np.ndarray],
    method: str = "gradcam",
    target: str | Sequence[str | None] | None = None,
    batch_size: int = 8,
    thresholds: dict[str, float] | None = None,
    layer: nn.Module | None = None,
    engine: Engine | None = None,
) -> list[CamResult]:
    """Explain ``images`` with a model that is not (yet) a bundle; see ``compute_cams``.

    ``engine``: runs ``model`` for the reported probabilities (default ``Engine.for_model``, fp32, on the
    model's device).
    """
    method = normalise_method(method)
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}.")
    targets = _targets_per_image(target, len(images))
    wanted = [None if t is None else resolve_target(label_space, t) for t in targets]  # fail before any work
    layer = cam_target_layer(model) if layer is None else layer
    transform = ImageTransform(preprocessing)
    device = _device_of(model)
    if engine is None:
        with model_state_preserved(model):
            engine = Engine.for_model(model, label_space, preprocessing, options=InferenceOptions(device=str(device)))
    layer_params = list(layer.parameters())
    results: list[CamResult] = []
    with model_state_preserved(model), torch.enable_grad():
        model.eval()
        # Gradients are needed at the target layer only: freeze everything else, so that backward
        # stops there instead of filling .grad of every weight.
        for p in model.parameters():
            p.requires_grad_(False)
        for p in layer_params:
            p.requires_grad_(True)
        with _cam_extractor(method, model, layer) as extractor:
            for start in range(0, len(images), batch_size):
                chunk = [np.asarray(img, dtype=np.float32) for img in images[start : start + batch_size]]
                for img in chunk:
                    if img.ndim != 2:
                        raise ConfigError(f"Expected decoded grayscale images (H, W), got shape {img.shape}.")
                x = torch.stack([transform(img) for img in chunk])
                # The probabilities come from the engine (backend, precision, TTA), as /v1/predict's do;
                # the CAM needs gradients, so it runs its own fp32 forward of the torch module below.
                probs = engine.class_probabilities(x)
                x = x.to(device)
                idx = [
                    predicted_class(p, label_space, thresholds) if w is None else w
                    for p, w in zip(probs, wanted[start : start + len(chunk)], strict=True)
                ]
                if not layer_params:
                    x.requires_grad_(True)  # a parameter-free target layer: get the graph from the input
                maps = extractor(input_tensor=x, targets=[cam_target(label_space, i) for i in idx])
                extractor.activations_and_grads.clear()
                for img, cam_in, p, i in zip(chunk, maps, probs, idx, strict=True):
                    cam = cam_to_original(cam_in, img.shape, preprocessing)
                    results.append(
                        CamResult(
                            cam=cam,
                            target=label_space.classes[i],
                            probability=float(p[i]),
                            boxes=cam_to_boxes(cam),
                            method=method,
                            probabilities={c: float(v) for c, v in zip(label_space.classes, p, strict=True)},
                        )
                    )
    return results


def compute_cams(
    bundle: Bundle,
    images: Sequence[np.ndarray],
    method: str = "gradcam",
    target: str | Sequence[str | None] | None = None,
    batch_size: int = 8,
    engine: Engine | None = None,
) -> list[CamResult]:
    """Class activation maps of a bundle's model for decoded images, at each image's own resolution.

    Args:
        bundle: a loaded bundle (its model stays on whatever device it is on).
        images: decoded float32 (H, W) images in [0, 1] (``cxrkit.io.read_image``); sizes may differ.
        method: one of ``list_methods()`` (default Grad-CAM).
        target: the class to explain, by name (case-insensitive), for every image; or one name (or
            None) per image. None explains the predicted class (binary: the positive class when its
            probability reaches the bundle's threshold).
        batch_size: images per forward/backward pass.
        engine: the bundle's ``Engine``, whose ``InferenceOptions`` (backend, precision) give the reported
            probabilities and the default target, exactly as predict computes them; default
            ``Engine(bundle)`` with default options on the model's device. The maps themselves come from the bundle's torch module, in fp32.

    Returns:
        One ``CamResult`` per image, in order.

    Raises:
        UnknownNameError: unknown method or target class (the message lists the valid ones).
        ConfigError: an image is not 2-D, or the number of targets does not match the images.
    """
    return compute_cams_for_model(
        bundle.model,
        bundle.label_space,
        bundle.preprocessing,
        images,
        method=method,
        target=target,
        batch_size=batch_size,
        thresholds=bundle.thresholds,
        engine=engine or default_engine(bundle),
    )


def _device_of(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def default_engine(bundle: Bundle) -> Engine:
    """The bundle's engine with default options, on the model's own device, leaving its train/eval mode as it was."""
    with model_state_preserved(bundle.model):
        return Engine(bundle, InferenceOptions(device=str(_device_of(bundle.model))))
