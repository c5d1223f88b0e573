"""`cxr keys add/list/revoke`: API keys of the server's case store (scopes read, write, admin)."""

from __future__ import annotations

from typing import Annotated

import typer

from cxrkit.commands.common import friendly_errors, print_json

keys_app = typer.Typer(no_args_is_help=True)

DbOpt = Annotated[
    str | None,
    typer.Option("--db", help="Case store URL (default sqlite under CXRKIT_HOME; the one `cxr serve --db` uses)."),
]


def _ring(db: str | None):
    from cxrkit.serving.keys import KeyRing
    from cxrkit.serving.store import CaseStore

    return KeyRing(CaseStore(db))


@keys_app.command("add")
@friendly_errors
def add_cmd(
    scope: Annotated[
        str, typer.Option("--scope", help="read (GET routes), write (+ record analyses), admin (+ audit).")
    ],
    name: Annotated[str, typer.Option("--name", help="Who or what holds the key (for the audit trail).")] = "",
    db: DbOpt = None,
) -> None:
    """Create a key and print it once (only its scrypt hash is stored). The server then requires keys."""
    token, info = _ring(db).create(name, scope)
    print_json({**info, "key": token, "note": "Shown once: store it now. Send it as X-API-Key."})


@keys_app.command("list")
@friendly_errors
def list_cmd(db: DbOpt = None) -> None:
    """Every key: id, name, scope, created, revoked (never the secret)."""
    print_json(_ring(db).list())


@keys_app.command("revoke")
@friendly_errors
def revoke_cmd(
    key_id: Annotated[str, typer.Argument(help="The key's id (`cxr keys list`).")], db: DbOpt = None
) -> None:
    """Revoke a key: the running server refuses it from its next request."""
    from cxrkit.core.errors import ConfigError

    if not _ring(db).revoke(key_id):
        raise ConfigError(f"No active key with id {key_id!r} (see `cxr keys list`).")
    print_json({"revoked": key_id})
