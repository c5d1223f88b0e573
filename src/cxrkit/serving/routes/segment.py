"""POST /v1/segment: lung mask, outline overlay, lung box and lung area of one image (not recorded)."""

from __future__ import annotations

import base64
import logging
import time
from typing import Annotated, Any

from fastapi import APIRouter, Form

from cxrkit.core.errors import CxrkitError
from cxrkit.models.lungs import outline_layer, outline_overlay
from cxrkit.serving.deps import FileField, StateDep, WorkSlot
from cxrkit.serving.errors import NotFound
from cxrkit.serving.segment import describe_segmenter, png_bytes, segment_mask, served_segmenter
from cxrkit.serving.uploads import decode_upload, read_bounded

log = logging.getLogger("cxrkit.serving")

router = APIRouter(tags=["segmentation"])


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@router.post("/segment")
def segment(
    state: StateDep,
    _slot: WorkSlot,
    file: FileField,
    include_mask: Annotated[
        bool, Form(description="Return the mask PNG (base64, 255 = lung) at the image's size.")
    ] = True,
    include_overlay: Annotated[bool, Form(description="Return the outline overlay PNG (base64).")] = True,
    include_outline: Annotated[
        bool, Form(description="Return the outlines alone on a transparent RGBA PNG (to lay over a heatmap).")
    ] = False,
) -> dict[str, Any]:
    """The lungs of one frontal chest X-ray: ``bbox`` [x0, y0, x1, y1] (pixels of the uploaded image, end
    exclusive), ``lung_fraction``, ``lungs_found`` and a ``warning`` when no lungs are found (a lateral
    view, or not a chest X-ray). Segmentation results are not stored in the case store."""
    t0 = time.perf_counter()
    try:
        segmenter = served_segmenter()
    except CxrkitError as err:
        # Not configured here (like /v1/similar without an index): a 404 the client can act on, not a 5xx.
        raise NotFound(f"No lung segmenter is available on this server: {err}", "no_segmenter") from err
    upload = decode_upload(read_bounded(file.file, state.limits.max_upload_bytes), state.limits)
    record, mask = segment_mask(upload.image, segmenter)
    answer: dict[str, Any] = {"segmenter": describe_segmenter(segmenter), **record, "input": upload.describe()}
    if include_mask:
        answer["mask_png"] = b64(png_bytes(mask.astype("uint8") * 255))
    if include_overlay:
        answer["overlay_png"] = b64(png_bytes(outline_overlay(upload.image, mask, record["bbox"])))
    if include_outline:
        answer["outline_png"] = b64(png_bytes(outline_layer(mask)))
    log.info("segment %.1fms lungs_found=%s", 1000 * (time.perf_counter() - t0), record["lungs_found"])
    return answer
