"""POST /v1/similar and GET /v1/index/images/{row}: similar cases from the configured index."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query
from fastapi.responses import Response

from cxrkit.serving.deps import FileField, StateDep, WorkSlot
from cxrkit.serving.errors import ApiError, NotFound
from cxrkit.serving.uploads import decode_upload, read_bounded

router = APIRouter(tags=["similar cases"])


@router.post("/similar")
def similar(
    state: StateDep,
    _slot: WorkSlot,
    file: FileField,
    k: Annotated[int, Form(ge=1, description="How many similar cases.")] = 8,
) -> dict[str, Any]:
    """The k most similar indexed cases (labels, patient, similarity); needs a configured index."""
    if state.index is None or state.index_model is None:
        raise NotFound(
            "No similar-case index is configured on this server. Build one with `cxr index build --model "
            "MODEL DATA --out INDEX_DIR` and start the server with `cxr serve --index INDEX_DIR`.",
            "no_index",
        )
    if k > state.limits.max_k:
        raise ApiError(422, "bad_option", f"k must be at most {state.limits.max_k}, got {k}.")
    upload = decode_upload(read_bounded(file.file, state.limits.max_upload_bytes), state.limits)
    vec = state.index_model.predictor.embed([upload.image])
    sims, ids = state.index.search(vec, k)
    hits = []
    for rank, (s, i) in enumerate(zip(sims[0], ids[0], strict=True), start=1):
        if i < 0:
            continue
        hit = state.index.hit(int(i), float(s), rank)
        hit["file"] = Path(str(hit.pop("path") or "")).name
        hit["image_url"] = f"/v1/index/images/{int(i)}"
        hits.append(hit)
    return {
        "k": k,
        "model": state.index_model.info,
        "index": {"count": len(state.index), "classes": list(state.index.label_space.classes)},
        "input": upload.describe(),
        "neighbours": hits,
    }


@router.get("/index/images/{row}", response_class=Response)
def index_image(state: StateDep, row: int, size: Annotated[int, Query(ge=16, le=1024)] = 256) -> Response:
    """A thumbnail (PNG) of the indexed image at ``row`` (only images in the index are served)."""
    if state.index is None:
        raise NotFound("No similar-case index is configured on this server.", "no_index")
    if not 0 <= row < len(state.index):
        raise NotFound(f"Row {row} is not in the index (it has {len(state.index)} rows).")
    png = state.thumbnail(row, size)
    if png is None:
        raise NotFound(f"The image of index row {row} can no longer be read on the server.", "image_missing")
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})
