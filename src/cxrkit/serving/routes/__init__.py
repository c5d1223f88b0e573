"""The /v1 REST API, one router per resource; ``v1_router()`` joins them behind the API-key check."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from cxrkit.serving.deps import require_api_key
from cxrkit.serving.routes import admin, analysis, models, patients, segment, similar


def v1_router() -> APIRouter:
    """Every /v1 route (mount with ``prefix="/v1"``)."""
    router = APIRouter(dependencies=[Depends(require_api_key)])
    for module in (models, analysis, similar, patients, admin, segment):
        router.include_router(module.router)
    return router


__all__ = ["v1_router"]
