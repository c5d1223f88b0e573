"""`cxr export`: a bundle as an ONNX file (for ONNX Runtime, `--backend onnx`, or other runtimes)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cxrkit.commands.common import DefaultModelOpt, JsonOpt, QuietOpt, print_json, setup_logging


def export_cmd(
    onnx: Annotated[Path, typer.Option("--onnx", help="Where to write the .onnx file.")],
    model: DefaultModelOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Export a model to ONNX (outputs: logits, embedding), checked against PyTorch within 1e-4."""
    from cxrkit.models import load_bundle, resolve_bundle
    from cxrkit.models.bundle import default_bundle
    from cxrkit.models.onnx_export import export_onnx

    setup_logging(quiet or as_json)
    result = export_onnx(load_bundle(resolve_bundle(model or default_bundle())), onnx)
    if as_json:
        print_json(result)
    else:
        typer.echo(f"wrote {result['onnx']} (max probability difference vs PyTorch {result['max_abs_diff_proba']:.1e})")
