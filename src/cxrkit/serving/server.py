"""Start the web app and REST API with uvicorn (``cxr serve``, ``make serve``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from cxrkit.core.errors import ConfigError
from cxrkit.core.settings import cxrkit_home, index_setting
from cxrkit.models import list_bundles
from cxrkit.models.bundle import default_bundle
from cxrkit.serving.security import WebPolicy

log = logging.getLogger(__name__)

NO_MODELS = (
    "No model bundle is available to serve: none is shipped in cxrkit/models/shipped/ or installed under "
    "{home}/models/. Fix: train one (`cxr train recipes/pneumonia.yaml`, or `make demo` first for the data), "
    "then ship it (`make ship NAME=pneumonia`) or copy the bundle folder to {home}/models/NAME/; or pass "
    "--model PATH/TO/BUNDLE."
)


def default_models() -> list[str]:
    """Every bundle ``list_bundles()`` knows, the declared default (``default_bundle()``) first.

    Raises:
        ConfigError: there is none (the message says how to train and ship one).
    """
    names = list_bundles()
    if not names:
        raise ConfigError(NO_MODELS.format(home=cxrkit_home()))
    first = default_bundle()
    return [first, *(n for n in names if n != first)]


def default_index() -> Path | None:
    """``$CXRKIT_INDEX``, else ``$CXRKIT_HOME/index`` when it holds an index, else None."""
    env = index_setting()
    if env is not None:
        return env
    local = cxrkit_home() / "index"
    return local if (local / "index.json").is_file() else None


def serve(
    models: Sequence[str] | None = None,
    index: str | Path | None = None,
    db_url: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: str | None = None,
    web: WebPolicy | None = None,
    max_upload_mb: float | None = None,
    queue: dict[str, int | None] | None = None,
    threads: int | None = None,
    backend: str = "torch",
    precision: str = "auto",
) -> None:
    """Load the models once, open the case store and index, then serve until interrupted.

    Raises:
        ConfigError, BundleError, UnknownNameError: before listening, with a message that says the fix.
    """
    import uvicorn

    from cxrkit.models.engine import InferenceOptions
    from cxrkit.serving.app import create_app
    from cxrkit.serving.predictor import configure_threads
    from cxrkit.serving.uploads import ServerLimits

    n = configure_threads(threads)
    names = list(models) if models else default_models()
    index = index if index is not None else default_index()
    app = create_app(
        names,
        index=index,
        db_url=db_url,
        api_key=api_key,
        web=web or WebPolicy(bind_host=host),
        limits=ServerLimits.from_env(max_upload_mb, **(queue or {})),
        inference=InferenceOptions(backend=backend, precision=precision),
    )
    state = app.state.cxr
    log.info(
        "serving %s on http://%s:%d (case store: %s, index: %s, torch threads: %d, API key: %s)",
        ", ".join(state.models),
        host,
        port,
        state.store.describe()["url"],
        state.index.path if state.index is not None else "none",
        n,
        "required" if state.keys.required() else "off (no key in the store, no CXRKIT_API_KEY)",
    )
    # uvicorn's access log would print request paths, which hold patient IDs: ours redacts them.
    uvicorn.run(app, host=host, port=port, access_log=False, log_level="info")
