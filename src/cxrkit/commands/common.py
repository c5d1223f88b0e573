"""What every `cxr` command shares: options, logging set-up, error printing and JSON output.

Commands import this module, never `cxrkit.cli`: cli.py imports the commands (one way only).
"""

from __future__ import annotations

import functools
import logging
import sys
import warnings
from collections.abc import Callable
from typing import Annotated, Any

import typer

from cxrkit.core.errors import CxrkitError
from cxrkit.core.jsonable import json_text

BackendOpt = Annotated[
    str,
    typer.Option(
        "--backend",
        help="torch, onnx (ONNX Runtime on an export cached per model), or onnx-int8 (the model's INT8 "
        "ONNX model, where its accuracy check passed: see cxr threshold).",
    ),
]
DefaultModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model", "-m", help="A bundle name or folder (default: $CXRKIT_DEFAULT_MODEL, else 'all', else 'pneumonia')."
    ),
]
PrecisionOpt = Annotated[
    str,
    typer.Option(
        "--precision", help="auto (bf16 where the CPU/GPU has it natively and the model passed its check), fp32, bf16."
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors on stderr.")]
CompileOpt = Annotated[
    bool,
    typer.Option(
        "--compile",
        help="torch.compile the model first (torch backend; CUDA graphs for small batches on a GPU): pays off "
        "over many images, costs a compilation up front.",
    ),
]


# Libraries whose INFO lines are noise to a cxr user: faiss's CPU-feature probing ("Loading faiss with
# AVX2 support", "Could not load library with AVX2 support"), onnx_ir/onnxscript's per-pass lines
# during `cxr export` (71 of them), torch.onnx's export chatter.
QUIET_LOGGERS = ("faiss.loader", "onnx_ir", "onnxscript", "torch.onnx", "torch.export")


class _NoLightningTips(logging.Filter):
    """Drop Lightning's advertising ("💡 Tip: ... litlogger") and its accelerator inventory lines."""

    NOISE = (
        "Tip:",
        "GPU available:",
        "TPU available:",
        "HPU available:",
        "litlogger",
        "LitLogger",
        "to estimate number of stepping batches",
    )

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(("lightning", "pytorch_lightning")):
            return True
        msg = record.getMessage()
        return not any(n in msg for n in self.NOISE)


def setup_logging(quiet: bool) -> None:
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    # Lightning gives itself a handler when imported before logging was set up: filter that one too.
    for logger in (logging.getLogger(), logging.getLogger("lightning.pytorch"), logging.getLogger("lightning.fabric")):
        for handler in logger.handlers:
            if not any(isinstance(f, _NoLightningTips) for f in handler.filters):
                handler.addFilter(_NoLightningTips())
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    # Lightning's own use of a deprecated torch API: nothing a cxr user can act on (only this message).
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")


def friendly_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Print cxrkit's own errors as one clear message (no traceback) and exit with status 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except CxrkitError as e:
            typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
            raise typer.Exit(code=2) from None

    return wrapper


def print_json(obj: Any) -> None:
    typer.echo(json_text(obj, lenient=True), nl=False)
