"""`cxr models list`, `cxr train`, `cxr predict`, `cxr evaluate`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cxrkit.commands.common import (
    BackendOpt,
    CompileOpt,
    DefaultModelOpt,
    JsonOpt,
    PrecisionOpt,
    QuietOpt,
    friendly_errors,
    print_json,
    setup_logging,
)

models_app = typer.Typer(no_args_is_help=True)
ModelOpt = Annotated[str, typer.Option("--model", "-m", help="A shipped bundle name or a bundle folder.")]
StrictOpt = Annotated[
    bool, typer.Option("--strict", help="Exit with status 1 when any image could not be read (default: skip it, warn).")
]


def _report_skipped(skipped: list[dict[str, str]], strict: bool, as_json: bool) -> None:
    """Warn about skipped images (stderr) and, with --strict, exit 1 once the results are printed."""
    if skipped and not as_json:  # each one was logged as a warning when it was met
        typer.secho(f"skipped {len(skipped)} unreadable image(s)", fg=typer.colors.YELLOW, err=True)
    if skipped and strict:
        raise typer.Exit(code=1)


@models_app.command("list")
@friendly_errors
def list_cmd(pattern: Annotated[str, typer.Argument()] = "*", as_json: JsonOpt = False) -> None:
    """Registered architectures and available trained bundles."""
    from cxrkit.models import get_model_info, list_bundles, list_models

    archs = [
        {"name": n, "family": get_model_info(n).family, "weights": get_model_info(n).weights_source}
        for n in list_models(pattern)
    ]
    from cxrkit.core.errors import CxrkitError
    from cxrkit.models.bundle import default_bundle

    bundles = list_bundles()
    segmenters = list_bundles("segmentation")
    try:
        default: str | None = default_bundle()
    except CxrkitError:
        default = None
    if as_json:
        print_json({"architectures": archs, "bundles": bundles, "default": default, "segmenters": segmenters})
        return
    typer.echo("architectures:")
    for a in archs:
        typer.echo(f"  {a['name']:20s} {a['family']:12s} {a['weights']}")
    typer.echo("trained bundles: " + (", ".join(bundles) if bundles else "(none yet: see recipes/)"))
    if default:
        typer.echo(f"default model: {default} (set CXRKIT_DEFAULT_MODEL to change it)")
    if segmenters:
        typer.echo("segmenters (cxr segment): " + ", ".join(segmenters))


def train_cmd(
    recipe: Annotated[Path, typer.Argument(help="A recipe YAML (see recipes/).")],
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override: key.sub=value (repeatable).")] = None,
    devices: Annotated[str | None, typer.Option(help="Lightning devices (e.g. 2, or auto).")] = None,
    num_nodes: Annotated[int | None, typer.Option(help="Lightning nodes.")] = None,
    strategy: Annotated[str | None, typer.Option(help="Lightning strategy (e.g. ddp).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from <out>/checkpoints/last.ckpt.")] = False,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Train from a recipe; ends in a bundle (<out>/bundle) with its threshold chosen on validation."""
    import sys

    from cxrkit.training.recipe import load_recipe
    from cxrkit.training.run import train_from_recipe

    setup_logging(quiet or as_json)
    overrides = list(set_ or [])
    if devices is not None:
        overrides.append(f"train.devices={devices}")
    if num_nodes is not None:
        overrides.append(f"train.num_nodes={num_nodes}")
    if strategy is not None:
        overrides.append(f"train.strategy={strategy}")
    result = train_from_recipe(
        load_recipe(recipe, overrides), resume=resume, progress=sys.stderr.isatty() and not quiet
    )
    if not result:
        return  # a non-zero DDP rank
    if as_json:
        print_json(result)
    else:
        typer.echo(f"bundle: {result.get('bundle') or result.get('baseline')}")
        if "val_auroc" in result:
            typer.echo(f"validation AUROC: {result['val_auroc']:.4f}  ({result['n_val']} images)")
        else:  # a segmenter
            v = result["val"]
            typer.echo(f"validation Dice {v['dice_lungs']:.4f}, IoU {v['iou_lungs']:.4f}  ({result['n_val']} images)")


def predict_cmd(
    images: Annotated[list[Path], typer.Argument(help="Image files or folders (PNG, JPEG, DICOM).")],
    model: DefaultModelOpt = None,
    batch_size: Annotated[int, typer.Option(help="Images per batch.")] = 32,
    backend: BackendOpt = "torch",
    precision: PrecisionOpt = "auto",
    compile_: CompileOpt = False,
    strict: StrictOpt = False,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Ranked class probabilities and the findings above threshold, per image."""
    from cxrkit.models.bundle import default_bundle
    from cxrkit.models.engine import InferenceOptions
    from cxrkit.serving.predictor import Predictor

    setup_logging(quiet or as_json)
    options = InferenceOptions(backend=backend, precision=precision, batch_size=batch_size, compile=compile_)
    predictor = Predictor.load(model or default_bundle(), options)
    skipped: list[dict[str, str]] = []
    results = predictor.predict_paths(images, skipped=skipped, progress=not quiet)
    if as_json:
        print_json({"model": predictor.describe(), "predictions": results, "skipped": skipped})
    else:
        # a multiclass model's operating class is called at its own threshold, even when another class is likelier
        operating = predictor.bundle.thresholds if predictor.bundle.label_space.task.value == "multiclass" else {}
        for r in results:
            ranked = ", ".join(f"{c['class']} {c['probability']:.3f}" for c in r["ranked"])
            found = ", ".join(r["findings"]) or "none above threshold"
            for c in set(r["findings"]) & set(operating):
                found += f" ({r['probabilities'][c]:.3f} >= {operating[c]:.3g}, its operating point)"
            typer.echo(f"{r['path']}: {found}  [{ranked}]")
            for w in r["warnings"]:
                typer.secho(f"  warning: {w}", fg=typer.colors.YELLOW, err=True)
    _report_skipped(skipped, strict, as_json)


def evaluate_cmd(
    data: Annotated[list[str], typer.Argument(help="Dataset paths or a manifest (its 'test' split if it has one).")],
    model: DefaultModelOpt = None,
    split: Annotated[str | None, typer.Option(help="Evaluate only this split of a manifest (train/val/test).")] = None,
    label_map: Annotated[
        list[str] | None, typer.Option("--label-map", help="DATASET_CLASS=MODEL_CLASS (repeatable).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Write report.md, report.html, metrics.json and plots here.")] = None,
    n_boot: Annotated[int, typer.Option(help="Bootstrap resamples for the 95% CIs.")] = 1000,
    batch_size: Annotated[int, typer.Option(help="Images per batch.")] = 32,
    backend: BackendOpt = "torch",
    precision: PrecisionOpt = "auto",
    compile_: CompileOpt = False,
    strict: StrictOpt = False,
    by: Annotated[
        list[str] | None,
        typer.Option(
            "--by", help="Also a metrics table per group: source | site | view | sex | age_group (repeatable)."
        ),
    ] = None,
    record: Annotated[
        str | None,
        typer.Option("--record", help="Store this evaluation in the bundle under NAME (config + MODEL_CARD.md)."),
    ] = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Evaluate a model on labelled data at its stored threshold(s), with bootstrap CIs."""
    from cxrkit.evaluation.report import operating_point_rows
    from cxrkit.evaluation.run import evaluate_model
    from cxrkit.models.bundle import default_bundle
    from cxrkit.models.engine import InferenceOptions

    setup_logging(quiet or as_json)
    result = evaluate_model(
        model or default_bundle(),
        data,
        split=split,
        label_map=label_map or [],
        out=out,
        n_boot=n_boot,
        inference=InferenceOptions(backend=backend, precision=precision, batch_size=batch_size, compile=compile_),
        by=by or [],
        record=record,
    )
    if as_json:
        print_json(result)
        _report_skipped(result["skipped"], strict, as_json)
        return
    keys = (
        "n",
        "accuracy",
        "auroc",
        "auroc_ci",
        "sensitivity",
        "specificity",
        "threshold",
        "macro_auroc",
        "mean_auroc",
        "ece",
    )
    # a multiclass model's operating class adds its rule and one-vs-rest figures
    rows = [(k, result[k]) for k in keys if k in result] + operating_point_rows(result)
    width = max(len(k) for k, _ in rows)
    for k, value in rows:
        typer.echo(f"{k:{width}s} {value}")
    _print_groups(result)
    if result.get("recorded"):
        typer.echo(f"recorded as {result['recorded']['name']!r} in {result['recorded']['bundle']}")
    if out:
        typer.echo(f"report: {out / 'report.html'}")
    _report_skipped(result["skipped"], strict, as_json)


def _print_groups(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    from cxrkit.evaluation.groups import GROUP_HEADER, group_table

    overlap = result.get("overlap_with_training") or {}
    console = Console(stderr=True)
    if overlap.get("count"):
        console.print(
            f"[bold red]{overlap['count']} of {result['n']} images ({overlap['fraction']:.1%}) were in this model's "
            "training or validation data: these scores overstate how it does on new images.[/]"
        )
    for column, rows in (result.get("by") or {}).items():
        table = Table(*GROUP_HEADER, title=f"by {column}")
        for row in group_table(rows):
            table.add_row(*row)
        Console().print(table)


def threshold_cmd(
    model: ModelOpt,
    method: Annotated[
        str | None, typer.Option(help="youden | youden_band | sensitivity (default: the bundle's own method).")
    ] = None,
    target_sensitivity: Annotated[float | None, typer.Option(help="For --method sensitivity.")] = None,
    operating_class: Annotated[
        str | None,
        typer.Option(help="Multiclass: the class given a one-vs-rest threshold, e.g. COVID-19 (others: arg-max)."),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Write the updated bundle here (default: in place).")] = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Re-choose a bundle's threshold(s) on its recorded validation split and re-run its bf16 and INT8 checks
    (weights untouched; the INT8 model is kept beside them only where its check passed)."""
    from cxrkit.training.rethreshold import rethreshold_bundle

    setup_logging(quiet or as_json)
    result = rethreshold_bundle(model, method, target_sensitivity, out=out, operating_class=operating_class)
    if as_json:
        print_json(result)
    else:
        v = result["validation"]
        v = v.get("operating_point") or v  # multiclass with an operating class: that class against the rest
        typer.echo(f"{result['bundle']}: thresholds {result['thresholds']} ({result['method']})")
        typer.echo(
            f"validation at them: accuracy {v.get('accuracy')}, sensitivity {v.get('sensitivity')}, specificity {v.get('specificity')}"
        )
