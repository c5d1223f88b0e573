"""`cxr segment`: lung masks, outline overlays, lung boxes and lung area of chest X-rays."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cxrkit.commands.common import JsonOpt, QuietOpt, print_json, setup_logging


def segment_cmd(
    images: Annotated[list[Path], typer.Argument(help="Image files or folders (PNG, JPEG, DICOM).")],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for <stem>_mask.png, <stem>_lungs.png, segment.json.")
    ],
    model: Annotated[str, typer.Option("--model", "-m", help="A segmentation bundle name or folder.")] = "lungs",
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Segment the lungs: a mask PNG at each image's size (255 = lung), an outline overlay, the lung box
    and lung area fraction; warns when no lungs are found (a lateral view, or not a chest X-ray)."""
    from cxrkit.models.segmentation import load_segmenter
    from cxrkit.serving.predictor import expand_images
    from cxrkit.serving.segment import segment_files

    setup_logging(quiet or as_json)
    paths = expand_images(images)
    result = segment_files(paths, out, load_segmenter(model))
    if as_json:
        print_json(result)
        return
    for r in result["images"]:
        if r["lungs_found"]:
            typer.echo(f"{r['path']}: lungs {r['lung_fraction']:.1%} of the image, box {r['bbox']} -> {r['overlay']}")
        else:
            typer.secho(f"{r['path']}: WARNING {r['warning']} -> {r['overlay']}", fg=typer.colors.YELLOW)
    typer.echo(f"{len(result['images'])} images segmented into {out} ({result['warnings']} without lungs)")
