"""HTTP errors of the API: each is answered as ``{"detail": message, "code": short_name}`` with its status.

``ApiError`` is a FastAPI ``HTTPException`` carrying a machine-readable ``code``; the app's handler writes the
JSON. The subclasses name the common cases (401, 403, 404, 429, 503); ``cxrkit.serving.uploads.UploadError``
is the one for a refused upload (413, 415, 422).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError

from cxrkit.core.errors import CxrkitError, UnknownNameError

log = logging.getLogger("cxrkit.serving")


class ApiError(HTTPException):
    """An error answered with ``status``; ``code`` is a short machine-readable name, ``detail`` the message."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(status_code=status, detail=message, headers=headers or {})
        self.code = code

    @property
    def status(self) -> int:
        return self.status_code

    def __str__(self) -> str:  # the message alone (HTTPException prefixes the status)
        return str(self.detail)


class Unauthorized(ApiError):
    """401: no API key, or one that is unknown or revoked (``WWW-Authenticate`` names the schemes)."""

    def __init__(self, message: str):
        super().__init__(401, "unauthorized", message, headers={"WWW-Authenticate": 'Bearer, APIKey realm="cxrkit"'})


class Forbidden(ApiError):
    """403: a valid key whose scope does not cover the route."""

    def __init__(self, message: str):
        super().__init__(403, "forbidden", message)


class NotFound(ApiError):
    """404: the analysis, patient, index row or service asked for does not exist here."""

    def __init__(self, message: str, code: str = "not_found"):
        super().__init__(404, code, message)


class Unavailable(ApiError):
    """503 (or 429 for a client locked out): retry later, after ``retry_after`` seconds."""

    def __init__(self, code: str, message: str, retry_after: int, status: int = 503):
        super().__init__(status, code, message, headers={"Retry-After": str(int(retry_after))})


def error_response(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The JSON every API error is answered with."""
    return JSONResponse({"detail": detail, "code": code}, status_code=status, headers=headers)


async def _api_error(_: Request, err: ApiError) -> JSONResponse:
    return error_response(err.status_code, err.code, str(err.detail), dict(err.headers or {}))


async def _unknown_name(_: Request, err: UnknownNameError) -> JSONResponse:
    return error_response(422, "unknown_name", str(err))


async def _store_error(_: Request, err: SQLAlchemyError) -> JSONResponse:
    log.error("case store error: %s", type(err).__name__)
    return error_response(
        503, "store_unavailable", "The case store is unavailable; the analysis was not recorded. Retry later."
    )


async def _cxrkit_error(_: Request, err: CxrkitError) -> JSONResponse:
    return error_response(422, "invalid", str(err))


def install_error_handlers(app: FastAPI) -> None:
    """Answer ``ApiError`` with its status, an unknown name (a model, a class) and any other ``CxrkitError`` with
    422, and a case-store failure with 503: bad input is never a 5xx with a traceback."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(UnknownNameError, _unknown_name)
    app.add_exception_handler(SQLAlchemyError, _store_error)
    app.add_exception_handler(CxrkitError, _cxrkit_error)
