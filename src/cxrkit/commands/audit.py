"""`cxr audit`: the shortcut audit of a model on labelled data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cxrkit.commands.common import BackendOpt, JsonOpt, PrecisionOpt, QuietOpt, print_json, setup_logging


def audit_cmd(
    data: Annotated[list[str], typer.Argument(help="Labelled dataset paths or manifests (several sources: better).")],
    model: Annotated[str, typer.Option("--model", "-m", help="A shipped bundle name or a bundle folder.")] = "covid3",
    out: Annotated[Path | None, typer.Option(help="Write audit.json, report.md, report.html and plots here.")] = None,
    lungs: Annotated[
        str,
        typer.Option(
            help="Lung masks: auto (the `lungs` segmenter, else a fixed prior), prior, none, or a segmenter bundle."
        ),
    ] = "auto",
    split: Annotated[str | None, typer.Option(help="Audit only this split of a manifest (train/val/test).")] = None,
    label_map: Annotated[
        list[str] | None, typer.Option("--label-map", help="DATASET_CLASS=MODEL_CLASS (repeatable).")
    ] = None,
    max_per_source: Annotated[
        int | None, typer.Option(help="Audit at most this many random images per source.")
    ] = None,
    cam_per_class: Annotated[int, typer.Option(help="Images per class explained with Grad-CAM.")] = 40,
    border: Annotated[float, typer.Option(help="Fraction of each side blanked by the border test.")] = 0.1,
    fill: Annotated[str, typer.Option(help="Blanked pixels become: black, or mean (the image's mean).")] = "black",
    record: Annotated[
        bool, typer.Option(help="Store the result in the bundle: its MODEL_CARD.md gets a Shortcut audit section.")
    ] = False,
    unseen_only: Annotated[
        bool, typer.Option(help="Leave out images the model was trained or validated on (bundles that record them).")
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed of the samples and of the probes' folds.")] = 0,
    batch_size: Annotated[int, typer.Option(help="Images per batch.")] = 32,
    backend: BackendOpt = "torch",
    precision: PrecisionOpt = "auto",
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Shortcut audit: does the model read the lungs, or the source, the markers and the border? One verdict per check."""
    import sys

    from cxrkit.audit import AuditOptions, record_audit, run_audit, write_audit_report
    from cxrkit.audit.report import TITLES
    from cxrkit.models.engine import InferenceOptions

    setup_logging(quiet or as_json)
    options = AuditOptions(
        border=border, fill=fill, cam_per_class=cam_per_class, max_per_source=max_per_source, seed=seed
    )
    result = run_audit(
        model,
        data,
        split=split,
        label_map=label_map or [],
        lungs=lungs,
        options=options,
        inference=InferenceOptions(backend=backend, precision=precision, batch_size=batch_size),
        progress=sys.stderr.isatty() and not (quiet or as_json),
        unseen_only=unseen_only,
    )
    if out is not None:
        write_audit_report(result, out, title=f"Shortcut audit of {model} on {', '.join(data)}")
    if record:
        result.summary["recorded_in"] = str(record_audit(model, result))
    if as_json:
        print_json(result.summary)
        return
    s = result.summary
    typer.echo(f"{s['data']['n_images']} images; lung masks: {s['lung_masks']['name']}")
    for name, check in s["checks"].items():
        typer.echo(f"[{check['status'].upper():7s}] {TITLES[name]}: {check['verdict']}")
    if out is not None:
        typer.echo(f"report: {out / 'report.html'}")
    if record:
        typer.echo(f"recorded in {s['recorded_in']}/MODEL_CARD.md")
