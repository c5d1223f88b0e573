"""The FastAPI app: REST API under /v1, a web page at /, health at /health.

``create_app(models, index=None, db_url=None, api_key=None, limits=...)`` loads every model once, opens
the case store (creating its tables) and returns the app. Run it with uvicorn (``cxr serve`` does).
Bad input is always a 4xx whose JSON ``detail`` names the problem (and ``code`` a short name); nothing is
recorded for it. Logs carry analysis IDs, never patient identifiers or image bytes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from starlette.middleware.trustedhost import TrustedHostMiddleware

import cxrkit
from cxrkit.models.engine import InferenceOptions
from cxrkit.search import CaseIndex, load_index
from cxrkit.serving.deps import API_KEY_HEADER
from cxrkit.serving.errors import install_error_handlers
from cxrkit.serving.middleware import AccessLogMiddleware, AuditMiddleware, BodyLimitMiddleware
from cxrkit.serving.predictor import Predictor
from cxrkit.serving.routes import v1_router
from cxrkit.serving.security import SameOriginMiddleware, SecurityHeadersMiddleware, WebPolicy, offline_docs
from cxrkit.serving.state import ServerState, load_models, pick_index_model
from cxrkit.serving.store import CaseStore
from cxrkit.serving.uploads import ServerLimits
from cxrkit.serving.webpage import INDEX_HTML

log = logging.getLogger("cxrkit.serving")

FORM_OVERHEAD = 1 << 20  # multipart framing and the small form fields around the file


def create_app(
    models: Sequence[str | Path | Predictor] | Mapping[str, str | Path | Predictor],
    index: CaseIndex | str | Path | None = None,
    db_url: str | None = None,
    api_key: str | None = None,
    limits: ServerLimits | None = None,
    store: CaseStore | None = None,
    inference: InferenceOptions | None = None,
    web: WebPolicy | None = None,
) -> FastAPI:
    """Build the app: models load once here (safetensors bundles), the case store's tables are created.

    Args:
        models: bundle names / folders / loaded Predictors, or ``{name: ...}``; the first is the default.
        index: a similar-case index (folder or loaded); its model is one of ``models`` with the same
            fingerprint, else the model recorded in the index.
        db_url: SQLAlchemy URL of the case store (default SQLite ``$CXRKIT_HOME/cases.db``).
        api_key: when set, every /v1 route needs it in the ``X-API-Key`` header (or ``Authorization: Bearer``).
        limits: upload and request limits (default ``ServerLimits.from_env()``: CXRKIT_MAX_UPLOAD_MB).
        store: an open ``CaseStore`` to use instead of ``db_url``.
        inference: backend (torch/onnx) and precision of every served model (default: torch, auto).
        web: trusted Host names and cross-origin writes (default: localhost names, same-origin only).

    Raises:
        BundleError, UnknownNameError: a model is missing or corrupt (the message says how to fix it).
        ConfigError: no models, or the case store / index cannot be opened.
    """
    limits = limits or ServerLimits.from_env()
    served = load_models(models, inference)
    idx = load_index(index) if isinstance(index, str | Path) else index
    index_model = pick_index_model(idx, served, inference) if idx is not None else None
    state = ServerState(
        models=served,
        index=idx,
        index_model=index_model,
        store=store or CaseStore(db_url),
        limits=limits,
        api_key=api_key or None,
    )
    web = web or WebPolicy()
    app = FastAPI(
        docs_url=None,
        redoc_url=None,
        title="cxrkit",
        version=cxrkit.__version__,
        description=(
            "Chest X-ray analysis: predictions, heatmaps, similar cases and patient timelines. "
            "Research use only, not a medical device."
        ),
    )
    app.state.cxr = state
    app.add_middleware(BodyLimitMiddleware, max_body=limits.max_upload_bytes + FORM_OVERHEAD)
    app.add_middleware(AuditMiddleware, keys=state.keys)
    app.add_middleware(SameOriginMiddleware, allowed_origins=web.allowed_origins)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=web.hosts)
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(AccessLogMiddleware)
    offline_docs(app)

    install_error_handlers(app)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse(INDEX_HTML)

    @app.get("/health", tags=["service"])
    def health() -> dict[str, Any]:
        """Liveness and what is served (no API key needed)."""
        ok = state.store.ping()
        return {
            "status": "ok" if ok else "degraded",
            "version": cxrkit.__version__,
            "models": list(state.models),
            "index": state.index is not None,
            "store": {"backend": state.store.backend, "ok": ok},
            "api_key_required": state.keys.required(),
        }

    app.include_router(v1_router(), prefix="/v1")
    return app


__all__ = ["API_KEY_HEADER", "create_app"]
