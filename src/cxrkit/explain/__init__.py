"""Explanations: class activation maps, overlays, CAM -> boxes, localisation scores and sanity checks."""

from cxrkit.explain.boxes import cam_to_boxes
from cxrkit.explain.cam import (
    CamResult,
    cam_to_original,
    compute_cams,
    compute_cams_for_model,
    letterbox_geometry,
    list_methods,
    model_state_preserved,
)
from cxrkit.explain.export import explain_files
from cxrkit.explain.localization import (
    best_box_iou,
    box_iou,
    pointing_hit,
    read_nih_boxes,
    scale_box,
    score_localization,
    summarize_localization,
)
from cxrkit.explain.overlay import heatmap, overlay
from cxrkit.explain.sanity import randomization_check, randomized_model, rank_correlation

__all__ = [
    "CamResult",
    "best_box_iou",
    "box_iou",
    "cam_to_boxes",
    "cam_to_original",
    "compute_cams",
    "compute_cams_for_model",
    "explain_files",
    "heatmap",
    "letterbox_geometry",
    "list_methods",
    "model_state_preserved",
    "overlay",
    "pointing_hit",
    "randomization_check",
    "randomized_model",
    "rank_correlation",
    "read_nih_boxes",
    "scale_box",
    "score_localization",
    "summarize_localization",
]
