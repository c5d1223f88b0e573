"""FastAPI dependencies shared by the /v1 routers: the server state, the API-key check, form fields.

Routers never close over a ``ServerState``: they ask for it with ``StateDep`` (``request.app.state.cxr``),
so each resource lives in its own module under ``cxrkit.serving.routes`` and tests can build apps freely.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, File, Form, Request, UploadFile

from cxrkit.serving.state import ServerState
from cxrkit.serving.uploads import UploadError

API_KEY_HEADER = "X-API-Key"


def get_state(request: Request) -> ServerState:
    """The running server's state (models, index, case store, limits), set by ``create_app``."""
    return request.app.state.cxr


StateDep = Annotated[ServerState, Depends(get_state)]


def presented_key(request: Request) -> str | None:
    """The API key sent in ``X-API-Key`` or ``Authorization: Bearer``; None when there is none."""
    given = request.headers.get(API_KEY_HEADER)
    auth = request.headers.get("Authorization", "")
    if given is None and auth.lower().startswith("bearer "):
        given = auth[7:].strip()
    return given or None


def require_api_key(request: Request, state: StateDep) -> None:
    """When the server has an API key, every /v1 route needs it (401 otherwise)."""
    if state.api_key is None:
        return
    given = presented_key(request)
    if not given or not secrets.compare_digest(given.encode(), state.api_key.encode()):
        raise UploadError(401, "unauthorized", f"A valid API key is required: send it in the {API_KEY_HEADER} header.")


# Form fields shared by the upload routes.
FileField = Annotated[UploadFile, File(description="PNG, JPEG or DICOM (sniffed from the content, not the name).")]
PatientField = Annotated[str | None, Form(description="Patient ID (else read from DICOM PatientID).")]
DateField = Annotated[str | None, Form(description="Study date yyyy-mm-dd (else DICOM StudyDate).")]
ModelField = Annotated[str | None, Form(description="Model name (GET /v1/models); default the first served.")]
