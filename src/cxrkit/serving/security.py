"""Browser-facing defences: trusted Host names, same-origin writes, security headers, offline /docs.

By default the server answers only Host names that mean "this machine" (the bind host and localhost
names), so a DNS-rebinding page cannot talk to it; it refuses state-changing requests (POST, PUT,
PATCH, DELETE) that a browser marks as coming from another origin, so a form on another site cannot
record analyses; it sends no CORS headers at all. ``cxr serve --allowed-host/--allowed-origin`` widen
both. Clients that are not browsers (curl, scripts) send no Origin and are not affected.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "[::1]")
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
DOCS_STATIC = "/docs-static"

# The page and Swagger UI use inline script/style; nothing is loaded from another origin.
CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self' 'unsafe-inline'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
)


@dataclass(frozen=True)
class WebPolicy:
    """Who may reach the server from a browser: ``cxr serve --host/--allowed-host/--allowed-origin``."""

    bind_host: str = "127.0.0.1"
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()

    @property
    def hosts(self) -> list[str]:
        return trusted_hosts(self.bind_host, self.allowed_hosts)


def trusted_hosts(bind_host: str, extra: Iterable[str] = ()) -> list[str]:
    """Host names the server answers: the bind host (unless a wildcard), localhost names, ``extra``."""
    hosts = [*LOCAL_HOSTS]
    if bind_host and bind_host not in ("0.0.0.0", "::", ""):
        hosts.append(bind_host)
    hosts.extend(h.strip() for h in extra if h.strip())
    return list(dict.fromkeys(hosts))


def normalise_origin(origin: str) -> str:
    """``scheme://host[:port]`` in lower case, as browsers send it in the Origin header."""
    parts = urlsplit(origin.strip())
    if not parts.scheme or not parts.netloc:
        raise ValueError(f"{origin!r} is not an origin: use scheme://host[:port], e.g. https://pacs.example.org")
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


async def _refuse(send: Any, status: int, code: str, detail: str) -> None:
    body = json.dumps({"detail": detail, "code": code}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class SameOriginMiddleware:
    """Refuse (403) state-changing requests that a browser says come from another origin.

    The request's own origin is its Host header; an ``Origin`` (or, without one, a ``Referer``) with
    another host, ``Origin: null``, or ``Sec-Fetch-Site: cross-site/same-site`` is refused unless the
    origin is in ``allowed_origins``.
    """

    def __init__(self, app: Any, allowed_origins: Iterable[str] = ()):
        self.app = app
        self.allowed = {normalise_origin(o) for o in allowed_origins}

    def _verdict(self, headers: dict[bytes, bytes]) -> str | None:
        host = headers.get(b"host", b"").decode("latin-1").lower()
        origin = headers.get(b"origin", b"").decode("latin-1").strip()
        if not origin and headers.get(b"referer"):
            ref = urlsplit(headers[b"referer"].decode("latin-1"))
            origin = f"{ref.scheme}://{ref.netloc}" if ref.scheme and ref.netloc else "null"
        if origin:
            if origin.lower() == "null":
                return "an opaque (null) origin"
            try:
                norm = normalise_origin(origin)
            except ValueError:
                return "a malformed origin"
            if norm in self.allowed or urlsplit(norm).netloc == host:
                return None
            return f"origin {norm}"
        site = headers.get(b"sec-fetch-site", b"").decode("latin-1").lower()
        if site in ("cross-site", "same-site"):
            return f"a {site} page"
        return None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("method") in UNSAFE_METHODS:
            who = self._verdict(dict(scope.get("headers") or []))
            if who is not None:
                await _refuse(
                    send,
                    403,
                    "cross_origin",
                    f"Cross-origin request refused: {who} may not change data on this server. If that page is "
                    "trusted, start the server with --allowed-origin ORIGIN.",
                )
                return
        await self.app(scope, receive, send)


class SecurityHeadersMiddleware:
    """Add CSP (frame-ancestors 'none'), nosniff, X-Frame-Options and Referrer-Policy to every response."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in SECURITY_HEADERS if k not in names]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, with_headers)


def offline_docs(app: Any) -> None:
    """Serve /docs (Swagger UI) and /redoc from assets shipped in ``fastapi-offline``: no CDN."""
    import fastapi_offline
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
    from fastapi.responses import HTMLResponse
    from fastapi.staticfiles import StaticFiles

    static = Path(fastapi_offline.__file__).parent / "static"
    app.mount(DOCS_STATIC, StaticFiles(directory=static), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url,
            title=f"{app.title} API",
            swagger_js_url=f"{DOCS_STATIC}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_STATIC}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_STATIC}/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=app.openapi_url,
            title=f"{app.title} API",
            redoc_js_url=f"{DOCS_STATIC}/redoc.standalone.js",
            redoc_favicon_url=f"{DOCS_STATIC}/favicon.png",
            with_google_fonts=False,
        )
