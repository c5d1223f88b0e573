"""`cxr explain`: class activation maps for images, written as overlays, raw maps and boxes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cxrkit.commands.common import (
    BackendOpt,
    DefaultModelOpt,
    JsonOpt,
    PrecisionOpt,
    QuietOpt,
    print_json,
    setup_logging,
)


def explain_cmd(
    images: Annotated[list[Path], typer.Argument(help="Image files or folders (PNG, JPEG, DICOM).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for <stem>_cam.png, _cam.npy, _boxes.json.")],
    model: DefaultModelOpt = None,
    method: Annotated[
        str, typer.Option(help="gradcam, gradcam++, hirescam, scorecam, eigencam, layercam or xgradcam.")
    ] = "gradcam",
    target: Annotated[
        str | None, typer.Option(help="Class to explain (case-insensitive); default: the predicted one.")
    ] = None,
    boxes: Annotated[
        Path | None,
        typer.Option(help="NIH BBox_List_2017.csv: explain each boxed image's finding and score localisation."),
    ] = None,
    box_size: Annotated[int, typer.Option(help="Side of the images the --boxes were drawn on.")] = 1024,
    batch_size: Annotated[int, typer.Option(help="Images per forward/backward pass.")] = 8,
    backend: BackendOpt = "torch",
    precision: PrecisionOpt = "auto",
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Heatmaps of where the model looks (Grad-CAM and friends), boxes around hot regions, and with
    --boxes the pointing-game hit rate and IoU against ground-truth boxes. The probabilities are computed
    with --backend/--precision, as by `cxr predict`; the maps by the model's own fp32 forward and backward."""
    from cxrkit.explain import explain_files, read_nih_boxes
    from cxrkit.explain.cam import normalise_method
    from cxrkit.models.bundle import default_bundle
    from cxrkit.models.engine import InferenceOptions
    from cxrkit.serving.predictor import Predictor, expand_images

    setup_logging(quiet or as_json)
    method = normalise_method(method)
    paths = expand_images(images)
    gt = read_nih_boxes(boxes) if boxes is not None else None
    predictor = Predictor.load(
        model or default_bundle(), InferenceOptions(backend=backend, precision=precision, batch_size=batch_size)
    )
    if target is not None:
        from cxrkit.explain.cam import resolve_target

        resolve_target(predictor.bundle.label_space, target)  # fail before decoding anything
    result = explain_files(
        predictor.bundle,
        paths,
        out,
        method=method,
        target=target,
        batch_size=batch_size,
        gt_boxes=gt,
        gt_original_size=box_size,
        engine=predictor.engine,
    )
    if as_json:
        print_json({"model": predictor.describe(), **result})
        return
    for r in result["images"]:
        line = f"{r['path']}: {r['target']} {r['probability']:.3f} -> {r['overlay']}"
        loc = r.get("localization")
        if loc:
            line += f"  [pointing {'hit' if loc['hit'] else 'miss'}, IoU {loc['iou']:.2f}]"
        typer.echo(line)
    loc = result.get("localization")
    if loc is not None:
        if loc["n"]:
            typer.echo(f"localisation: {loc['n']} images, pointing-game hit rate {loc['hit_rate']:.3f}, "
                       f"mean IoU {loc['mean_iou']:.3f}")  # fmt: skip
        else:
            typer.echo("localisation: no image had ground-truth boxes of a class this model knows.")
        if loc["skipped_unknown_finding"]:
            typer.echo(f"  ({loc['skipped_unknown_finding']} boxed images skipped: finding not a model class)")
