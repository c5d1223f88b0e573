"""The `cxr` command line: a thin typer app. Each command parses, calls one library function, prints.

The commands live in `cxrkit.commands` and share `cxrkit.commands.common`; this module only builds the
app and registers them (commands never import it, so there is no import circle).
"""

from __future__ import annotations

import typer

from cxrkit.commands.common import (  # noqa: F401  (re-exported: tests and users import them from here)
    BackendOpt,
    PrecisionOpt,
    friendly_errors,
    print_json,
    setup_logging,
)

app = typer.Typer(
    name="cxr",
    help="cxrkit: deep learning on chest X-rays - data, models, evaluation, explanation, similar cases.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _register() -> None:
    from cxrkit.commands.audit import audit_cmd
    from cxrkit.commands.data import data_app
    from cxrkit.commands.explain import explain_cmd
    from cxrkit.commands.export import export_cmd
    from cxrkit.commands.keys import keys_app
    from cxrkit.commands.models import evaluate_cmd, models_app, predict_cmd, threshold_cmd, train_cmd
    from cxrkit.commands.search import index_app, timeline_cmd
    from cxrkit.commands.segment import segment_cmd
    from cxrkit.commands.serve import serve_cmd

    app.add_typer(data_app, name="data", help="Explore, split and balance datasets.")
    app.add_typer(models_app, name="models", help="Architectures and trained bundles.")
    app.command("train")(friendly_errors(train_cmd))
    app.command("predict")(friendly_errors(predict_cmd))
    app.command("evaluate")(friendly_errors(evaluate_cmd))
    app.command("threshold")(friendly_errors(threshold_cmd))
    app.command("explain")(friendly_errors(explain_cmd))
    app.command("export")(friendly_errors(export_cmd))
    app.command("audit")(friendly_errors(audit_cmd))
    app.command("segment")(friendly_errors(segment_cmd))
    app.add_typer(index_app, name="index", help="Similar-case index: build, add, query, evaluate.")
    app.command("timeline")(friendly_errors(timeline_cmd))
    app.command("serve")(friendly_errors(serve_cmd))
    app.add_typer(keys_app, name="keys", help="API keys of the server (scopes read, write, admin).")


_register()

if __name__ == "__main__":  # pragma: no cover
    app()
