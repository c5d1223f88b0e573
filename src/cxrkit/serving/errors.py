"""HTTP errors of the API: each is answered as ``{"detail": message, "code": short_name}`` with its status.

``ApiError`` is a FastAPI ``HTTPException`` carrying a machine-readable ``code``; the app's handler writes the
JSON. The subclasses name the common cases (401, 403, 404, 429, 503); ``cxrkit.serving.uploads.UploadError``
is the one for a refused upload (413, 415, 422).
"""

from __future__ import annotations

from fastapi import HTTPException


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
