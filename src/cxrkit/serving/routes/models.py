"""GET /v1/models: what is served."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from cxrkit.search import describe_index
from cxrkit.serving.deps import StateDep

router = APIRouter(tags=["models"])


@router.get("/models")
def list_models(state: StateDep) -> dict[str, Any]:
    """The served models (name, version, sha256, classes, thresholds) and the index, if any."""
    return {
        "default": state.default_name,
        "models": [m.info for m in state.models.values()],
        "index": describe_index(state.index) if state.index is not None else None,
    }
