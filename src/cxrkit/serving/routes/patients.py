"""GET /v1/patients/{id}/timeline(.png): a patient's recorded analyses over time."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response

from cxrkit.serving.deps import StateDep
from cxrkit.serving.errors import NotFound
from cxrkit.serving.state import ServerState
from cxrkit.serving.timeline import build_patient_timeline, timeline_png
from cxrkit.serving.uploads import clean_patient_id

router = APIRouter(tags=["patients"])


@router.get("/patients/{patient_id}/timeline")
def timeline(state: StateDep, patient_id: str, model: Annotated[str | None, Query()] = None) -> dict[str, Any]:
    """The patient's recorded analyses by study date then time, severity per study, drift verdict."""
    return timeline_or_404(state, patient_id, model)


@router.get("/patients/{patient_id}/timeline.png", response_class=Response)
def timeline_image(state: StateDep, patient_id: str, model: Annotated[str | None, Query()] = None) -> Response:
    """The timeline as a PNG plot (severity against study date, verdict in the title)."""
    return Response(timeline_png(timeline_or_404(state, patient_id, model)), media_type="image/png")


def timeline_or_404(state: ServerState, patient_id: str, model: str | None) -> dict[str, Any]:
    pid = clean_patient_id(patient_id)
    rows = state.store.patient_analyses(pid or "", model) if pid else []
    if not rows:
        raise NotFound("No analyses are recorded for this patient" + (" with this model." if model else "."))
    return build_patient_timeline(pid or "", rows, model)
