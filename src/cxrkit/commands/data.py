"""`cxr data summary|split|balance|cache`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cxrkit.commands.common import JsonOpt, QuietOpt, friendly_errors, print_json, setup_logging

data_app = typer.Typer(no_args_is_help=True)

PathsArg = Annotated[
    list[str],
    typer.Argument(help="Dataset roots, CSVs, NPZs or manifests; PATH::A,B keeps only classes A and B of PATH."),
]
FormatOpt = Annotated[
    str | None,
    typer.Option("--format", "-f", help="folder | nih | covid | radiography | medmnist | csv (default: detect)."),
]
HarmoniseOpt = Annotated[
    bool,
    typer.Option(
        "--harmonise", help="Relabel every dataset to one multi-label vocabulary (NaN where a source does not label)."
    ),
]


def _print_summary(s: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    pts = "unknown (split by image)" if s["n_patients"] is None else f"{s['n_patients']:,}"
    console.print(f"[bold]{s['n_images']:,} images[/], patients: {pts}, task: {s['task']}")
    table = Table("class", *s["split_counts"].keys(), "total")
    for c in s["classes"]:
        table.add_row(c, *(f"{v.get(c, 0):,}" for v in s["split_counts"].values()), f"{s['class_counts'][c]:,}")
    console.print(table)
    console.print("views: " + ", ".join(f"{k} {v}" for k, v in s["views"].items()))
    console.print("sources: " + ", ".join(f"{k} {v}" for k, v in s["sources"].items()))
    for key in ("age_groups", "sexes"):
        if s.get(key):
            console.print(f"{key.replace('_', ' ')}: " + ", ".join(f"{k} {v}" for k, v in s[key].items()))
    sz = s["image_sizes"]
    if sz.get("n_read"):
        console.print(
            f"image sizes ({sz['n_read']} read): width {sz['width']['min']}-{sz['width']['max']}, "
            f"height {sz['height']['min']}-{sz['height']['max']}; most common {sz['most_common']}"
        )
    if s["leaking_patients"]:
        console.print(f"[red]{s['leaking_patients']} patients appear in more than one split[/]")
    for note in s["notes"]:
        console.print(f"[dim]note: {note}[/]")


@data_app.command("summary")
@friendly_errors
def summary_cmd(
    paths: PathsArg,
    format: FormatOpt = None,
    as_json: JsonOpt = False,
    out: Annotated[Path | None, typer.Option(help="Write class_counts.png and samples.png here.")] = None,
    size_sample: Annotated[int, typer.Option(help="Images whose size is read (0 = all).")] = 2000,
    harmonise: HarmoniseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Images, patients, counts per class x split, views, sources, image sizes."""
    from cxrkit.data import load_datasets, summarize

    setup_logging(quiet or as_json)
    table = load_datasets(paths, format=format, harmonise=harmonise)
    result = summarize(table, size_sample=size_sample or None)
    if out is not None:
        from cxrkit.core.files import atomic_write_text
        from cxrkit.data.plots import class_count_plot, sample_grid

        out.mkdir(parents=True, exist_ok=True)
        result["plots"] = {
            "class_counts": str(class_count_plot(table, out / "class_counts.png")),
            "samples": str(sample_grid(table, out / "samples.png")),
        }
        atomic_write_text(out / "summary.json", __import__("json").dumps(result, indent=2))
    if as_json:
        print_json(result)
    elif not quiet:
        _print_summary(result)


@data_app.command("split")
@friendly_errors
def split_cmd(
    paths: PathsArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="Manifest CSV to write.")],
    val: Annotated[float, typer.Option(help="Share of images for validation.")] = 0.15,
    test: Annotated[float, typer.Option(help="Share of images for test.")] = 0.15,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    keep_existing: Annotated[
        bool, typer.Option(help="Keep splits the source already has (e.g. Kaggle train/test folders).")
    ] = False,
    per_class: Annotated[int | None, typer.Option(help="Undersample to at most N images per class.")] = None,
    format: FormatOpt = None,
    harmonise: HarmoniseOpt = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the split counts as JSON.")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Patient-grouped stratified train/val/test split, written as a manifest CSV."""
    from cxrkit.data import assign_splits, check_no_leakage, load_datasets, undersample, write_manifest
    from cxrkit.data.splits import split_counts

    setup_logging(quiet or as_json)
    table = load_datasets(paths, format=format, harmonise=harmonise)
    if per_class:
        table = undersample(table, per_class, seed=seed)
    if keep_existing and table.frame["split"].notna().all():
        check_no_leakage(table)
    else:
        table = assign_splits(table, val=val, test=test, seed=seed)
    write_manifest(table, out)
    counts = split_counts(table)
    if as_json:
        print_json({"manifest": str(out), "n_images": len(table), "split_counts": counts})
    elif not quiet:
        typer.echo(f"wrote {out} ({len(table):,} images, no patient in two splits)")
        for split, per in counts.items():
            typer.echo(f"  {split:5s} " + ", ".join(f"{c} {n:,}" for c, n in per.items()))


@data_app.command("cache")
@friendly_errors
def cache_cmd(
    paths: PathsArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="The cache folder to write (replaced if it exists).")],
    size: Annotated[
        int, typer.Option(help="Longer side of the stored images, px (aspect kept, never upscaled).")
    ] = 256,
    format: FormatOpt = None,
    workers: Annotated[int | None, typer.Option(help="Decoding processes (default: one per core).")] = None,
    harmonise: HarmoniseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Decode every image once into uint8 shards (LitData) + the table: pass OUT wherever a dataset goes."""
    from cxrkit.data import load_datasets
    from cxrkit.data.cache import build_cache

    setup_logging(quiet)
    table = load_datasets(paths, format=format, harmonise=harmonise)
    print_json(build_cache(table, out, size=size, workers=workers))
