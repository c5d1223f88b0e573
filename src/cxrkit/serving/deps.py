"""FastAPI dependencies shared by the /v1 routers: the server state, the API-key check, form fields.

Routers never close over a ``ServerState``: they ask for it with ``StateDep`` (``request.app.state.cxr``),
so each resource lives in its own module under ``cxrkit.serving.routes`` and tests can build apps freely.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, File, Form, Request, Security, UploadFile
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

import cxrkit
from cxrkit.io import declared_pixels
from cxrkit.serving.errors import Forbidden
from cxrkit.serving.keys import RANK, Caller
from cxrkit.serving.state import ServerState
from cxrkit.serving.uploads import read_bounded

API_KEY_HEADER = "X-API-Key"


def get_state(request: Request) -> ServerState:
    """The running server's state (models, index, case store, limits), set by ``create_app``."""
    return request.app.state.cxr


StateDep = Annotated[ServerState, Depends(get_state)]


# The two ways a client may send its key, as fastapi.security schemes (so /docs and the OpenAPI schema show
# them); neither raises by itself: an open server needs no key, and the answer to a bad one is ours (401 JSON).
api_key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="An API key (`cxr keys add`).")
bearer_token = HTTPBearer(auto_error=False, description="The same API key as a bearer token.")


def presented_key(
    header: Annotated[str | None, Security(api_key_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_token)],
) -> str | None:
    """The API key sent in ``X-API-Key`` (first) or ``Authorization: Bearer``; None when there is none."""
    if header:
        return header
    if bearer is None:
        return None
    return bearer.credentials.strip() or None


def current_caller(request: Request, state: StateDep, token: Annotated[str | None, Depends(presented_key)]) -> Caller:
    """Who makes this request (once per request): anyone on an open server, else the key's holder.

    Raises:
        Unauthorized: 401 no/bad key. Unavailable: 429 too many failed attempts from this client.
    """
    known = getattr(request.state, "caller", None)
    if known is not None:
        return known
    if not state.keys.required():
        caller = Caller(None, "admin")
    else:
        client = request.client.host if request.client else "unknown"
        caller = state.keys.authenticate(token, client)
    request.state.caller = caller
    return caller


def require(scope: str) -> Any:
    """A dependency: the caller, whose key must have ``scope`` (read < write < admin), else 403."""

    def check(caller: Annotated[Caller, Depends(current_caller)]) -> Caller:
        if RANK[caller.scope] < RANK[scope]:
            raise Forbidden(
                f"This API key has scope {caller.scope!r}; this route needs {scope!r} "
                f"(an admin creates one with `cxr keys add --scope {scope}`)."
            )
        if RANK[scope] > RANK.get(caller.action, 0):
            caller.action = scope
        return caller

    check.__name__ = f"require_{scope}"
    return check


require_api_key = require("read")  # every /v1 route needs at least a read key when keys are in use
Reader = Annotated[Caller, Depends(require("read"))]
Writer = Annotated[Caller, Depends(require("write"))]
Admin = Annotated[Caller, Depends(require("admin"))]


# Form fields shared by the upload routes.
FileField = Annotated[UploadFile, File(description="PNG, JPEG or DICOM (sniffed from the content, not the name).")]
PatientField = Annotated[str | None, Form(description="Patient ID (else read from DICOM PatientID).")]
DateField = Annotated[str | None, Form(description="Study date yyyy-mm-dd (else DICOM StudyDate).")]
ModelField = Annotated[str | None, Form(description="Model name (GET /v1/models); default the first served.")]


def work_slot(state: StateDep, file: FileField) -> Iterator[None]:
    """Hold a slot of the bounded work queue (weighted by the upload's declared pixels) while the route runs.

    Decoding and the model are the expensive part of a request: this bounds how many run at once and
    how many pixels they hold; a full queue is a 503 with ``Retry-After`` (``WorkQueue``).
    """
    data = read_bounded(file.file, state.limits.max_upload_bytes)
    file.file.seek(0)
    pixels = declared_pixels(data) or 0
    del data
    with state.work.slot(min(pixels, state.limits.max_pixels)):
        try:
            yield
        except BaseException as err:
            _drop_frames(err)
            raise


def _drop_frames(err: BaseException | None) -> None:
    """Clear the locals of cxrkit's finished frames an error's traceback keeps alive (they hold the decoded
    image and its copies) so the memory is free before the work slot goes to the next request."""
    resumable = inspect.CO_GENERATOR | inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR
    for _ in range(8):
        if err is None:
            return
        tb = err.__traceback__
        while tb is not None:
            frame = tb.tb_frame
            if frame.f_code.co_filename.startswith(_PACKAGE_DIR) and not frame.f_code.co_flags & resumable:
                with contextlib.suppress(RuntimeError):  # RuntimeError: still executing
                    frame.clear()
            tb = tb.tb_next
        err = err.__context__


_PACKAGE_DIR = str(Path(cxrkit.__file__).parent)


WorkSlot = Annotated[None, Depends(work_slot)]
