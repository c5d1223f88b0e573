"""`cxr serve`: the web page and REST API."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cxrkit.commands.common import BackendOpt, PrecisionOpt, QuietOpt, setup_logging
from cxrkit.core.settings import API_KEY_ENV

ModelOpt = Annotated[
    list[str] | None,
    typer.Option("--model", "-m", help="Bundle name or folder (repeatable). Default: every shipped/installed bundle."),
]
IndexOpt = Annotated[
    Path | None,
    typer.Option("--index", help="Similar-case index folder (default $CXRKIT_INDEX, or $CXRKIT_HOME/index if built)."),
]
DbOpt = Annotated[
    str | None,
    typer.Option("--db", help="Case store URL (default sqlite under CXRKIT_HOME; or postgresql+psycopg://...)."),
]
ApiKeyOpt = Annotated[str | None, typer.Option("--api-key", envvar=API_KEY_ENV, help="Require this key on /v1 routes.")]
AllowedHostOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--allowed-host",
        help="Extra Host name the server answers (repeatable); default the bind host and localhost names.",
    ),
]
AllowedOriginOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--allowed-origin",
        help="Another origin (https://host[:port]) whose pages may POST here (repeatable); default none.",
    ),
]
MaxUploadMbOpt = Annotated[
    float | None, typer.Option("--max-upload-mb", help="Upload size limit (default $CXRKIT_MAX_UPLOAD_MB or 50).")
]
MaxConcurrentOpt = Annotated[
    int | None,
    typer.Option("--max-concurrent", help="Analyses decoding/running at once (default $CXRKIT_MAX_CONCURRENT or 2)."),
]
MaxQueueOpt = Annotated[
    int | None,
    typer.Option(
        "--max-queue", help="Analyses that may wait for a slot; more get 503 (default $CXRKIT_MAX_QUEUE or 8)."
    ),
]
ThreadsOpt = Annotated[
    int | None, typer.Option(help="Torch CPU threads (default $CXRKIT_TORCH_THREADS, else half the cores, 1-4).")
]


def serve_cmd(
    model: ModelOpt = None,
    index: IndexOpt = None,
    db: DbOpt = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    api_key: ApiKeyOpt = None,
    allowed_host: AllowedHostOpt = None,
    allowed_origin: AllowedOriginOpt = None,
    max_upload_mb: MaxUploadMbOpt = None,
    max_concurrent: MaxConcurrentOpt = None,
    max_queue: MaxQueueOpt = None,
    threads: ThreadsOpt = None,
    backend: BackendOpt = "torch",
    precision: PrecisionOpt = "auto",
    quiet: QuietOpt = False,
) -> None:
    """Serve the web page and REST API (docs at /docs, schema at /openapi.json)."""
    from cxrkit.core.errors import ConfigError
    from cxrkit.serving.security import WebPolicy, normalise_origin
    from cxrkit.serving.server import serve

    setup_logging(quiet)
    try:
        origins = tuple(normalise_origin(o) for o in allowed_origin or ())
    except ValueError as err:
        raise ConfigError(f"--allowed-origin: {err}") from None
    serve(
        models=model or None,
        index=index,
        db_url=db,
        host=host,
        port=port,
        api_key=api_key,
        web=WebPolicy(bind_host=host, allowed_hosts=tuple(allowed_host or ()), allowed_origins=origins),
        max_upload_mb=max_upload_mb,
        queue={"max_concurrent": max_concurrent, "max_queue": max_queue},
        threads=threads,
        backend=backend,
        precision=precision,
    )
