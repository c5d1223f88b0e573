"""Models: backbone registry, offline weights, embeddings, bundles and classical baselines.

Never imports Lightning or the training/serving/evaluation layers, so prediction needs only this.
"""

import contextlib

# Registers lung-aware preprocessing for ImageTransform. It needs OpenCV; where that is missing (a
# bare GPU box), everything else still loads and a lungs bundle fails with the hook's own clear error.
with contextlib.suppress(ImportError):
    import cxrkit.models.lungs  # noqa: F401
from cxrkit.core.task import label_targets
from cxrkit.models.bundle import Bundle, list_bundles, load_bundle, resolve_bundle, save_bundle
from cxrkit.models.classical import ClassicalBaseline, downsample_pixels
from cxrkit.models.heads import logits_to_proba
from cxrkit.models.pretrained import (
    efficientnet_lite0_imagenet_state_dict,
    efficientnet_lite_imagenet_state_dict,
    load_state_dict_file,
    map_efficientnet_lite0_key,
    map_efficientnet_lite_key,
)
from cxrkit.models.registry import (
    ModelInfo,
    cam_target_layer,
    create_model,
    embed,
    get_model_info,
    list_models,
)

__all__ = [
    "Bundle",
    "ClassicalBaseline",
    "ModelInfo",
    "cam_target_layer",
    "create_model",
    "downsample_pixels",
    "efficientnet_lite0_imagenet_state_dict",
    "efficientnet_lite_imagenet_state_dict",
    "embed",
    "get_model_info",
    "label_targets",
    "list_bundles",
    "list_models",
    "load_bundle",
    "load_state_dict_file",
    "logits_to_proba",
    "map_efficientnet_lite0_key",
    "map_efficientnet_lite_key",
    "resolve_bundle",
    "save_bundle",
]
