"""ASGI middleware: a request-body limit enforced while reading, and access logs without patient IDs."""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any

log = logging.getLogger("cxrkit.serving.access")

Scope = dict[str, Any]

# Paths that carry a patient identifier are logged with it replaced (logs never hold patient IDs).
_REDACT = (re.compile(r"^(/v1/patients/)[^/]+"), r"\1{patient_id}")


def redact_path(path: str) -> str:
    pattern, repl = _REDACT
    return pattern.sub(repl, path)


class _BodyTooLarge(Exception):
    pass


async def _send_json(send: Any, status: int, payload: dict[str, Any]) -> None:
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    """Refuse request bodies above ``max_body`` bytes with 413, counting bytes as they arrive.

    A declared Content-Length above the limit is refused before anything is read; a chunked or lying
    client is cut off as soon as the running count passes the limit.
    """

    def __init__(self, app: Any, max_body: int):
        self.app = app
        self.max_body = int(max_body)

    def _payload(self) -> dict[str, Any]:
        mib = self.max_body / 2**20
        return {
            "detail": f"The request body exceeds the limit of {mib:.1f} MiB (set CXRKIT_MAX_UPLOAD_MB to change it).",
            "code": "too_large",
        }

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            await _send_json(send, 413, self._payload())
            return
        state = {"received": 0, "exceeded": False, "started": False}

        async def limited_receive() -> dict[str, Any]:
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > self.max_body:
                    state["exceeded"] = True
                    raise _BodyTooLarge()
            return message

        async def guarded_send(message: dict[str, Any]) -> None:
            if state["exceeded"]:
                # Whatever the app made of the cut-off body (a parse error), the client gets a 413.
                if message["type"] == "http.response.start" and not state["started"]:
                    state["started"] = True
                    await _send_json(send, 413, self._payload())
                return
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if state["exceeded"]:
                if not state["started"]:
                    state["started"] = True
                    await _send_json(send, 413, self._payload())
                return
            raise


def _status_recorder(send: Any) -> tuple[dict[str, int], Any]:
    """An ASGI ``send`` that notes the response status in the returned dict (500 until one is sent)."""
    status = {"code": 500}

    async def send_wrapper(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status["code"] = message["status"]
        await send(message)

    return status, send_wrapper


class AccessLogMiddleware:
    """One log line per request: method, path (patient IDs redacted), status, milliseconds."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status, send_wrapper = _status_recorder(send)
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            log.info(
                "%s %s %d %.1fms",
                scope.get("method"),
                redact_path(scope.get("path", "")),
                status["code"],
                (time.perf_counter() - start) * 1000,
            )


class AuditMiddleware:
    """After each /v1 response, one ``audit`` row: which key (if any), read/write/admin or denied, path, status.

    Routes say who called (``request.state.caller``, set by the API-key dependency) and what they recorded.
    """

    def __init__(self, app: Any, keys: Any):
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope.get("path", "").startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        import anyio

        state = scope.setdefault("state", {})
        status, send_wrapper = _status_recorder(send)
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            caller = state.get("caller")
            if caller is not None or status["code"] in (401, 403, 429):
                client = (scope.get("client") or ("", 0))[0]
                try:
                    await anyio.to_thread.run_sync(
                        self.keys.audit, caller, scope.get("method", ""), scope.get("path", ""), status["code"], client
                    )
                except Exception as err:  # the answer is sent; a store outage must not turn it into a 500
                    log.warning("audit row not written (%s)", type(err).__name__)
