"""GET /v1/audit: who read or wrote what, and when (admin keys only)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from cxrkit.serving.deps import Admin, StateDep

router = APIRouter(tags=["admin"])


@router.get("/audit")
def audit(
    state: StateDep,
    _caller: Admin,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    key_id: Annotated[str | None, Query(max_length=32)] = None,
) -> dict[str, Any]:
    """The latest audit rows (newest first): key id, read/write/admin/denied, method, path, status, analysis."""
    return {"entries": state.keys.audit_entries(limit, key_id)}
