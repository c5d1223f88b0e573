"""`cxr index build|add|query|evaluate` and `cxr timeline`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from cxrkit.commands.common import (
    BackendOpt,
    JsonOpt,
    PrecisionOpt,
    QuietOpt,
    friendly_errors,
    print_json,
    setup_logging,
)

index_app = typer.Typer(no_args_is_help=True)
BatchOpt = Annotated[int, typer.Option("--batch-size", help="Images per batch.")]
ChunkOpt = Annotated[int, typer.Option("--chunk-size", help="Images per resumable chunk (<out>.partial/).")]
IndexBackendOpt = Annotated[
    str, typer.Option("--backend", help="torch or onnx; index embeddings are always fp32 (rebuilds and queries agree).")
]


def _progress(quiet: bool, as_json: bool) -> bool:
    return sys.stderr.isatty() and not quiet and not as_json


@index_app.command("build")
@friendly_errors
def build_cmd(
    data: Annotated[list[str], typer.Argument(help="Dataset paths (PATH or PATH::CLASS,CLASS).")],
    model: Annotated[str, typer.Option("--model", "-m", help="A bundle name or folder.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The index folder to write (replaced atomically).")],
    batch_size: BatchOpt = 32,
    chunk_size: ChunkOpt = 1024,
    exact: Annotated[
        bool | None,
        typer.Option(
            "--exact/--approx",
            help="Exact (IndexFlatIP) or approximate search; default exact up to 15k images, HNSW to 200k, IVF beyond.",
        ),
    ] = None,
    num_workers: Annotated[int, typer.Option(help="Image decode workers (per rank).")] = 0,
    devices: Annotated[
        int, typer.Option(help="Processes (GPUs) per node; above 1 embeds in shards with Lightning's predict loop.")
    ] = 1,
    num_nodes: Annotated[int, typer.Option(help="Machines of a sharded build (SLURM/torchrun set the ranks).")] = 1,
    strategy: Annotated[
        str, typer.Option(help="ddp (re-runs this command per extra rank; torchrun/SLURM) or ddp_spawn.")
    ] = "ddp",
    accelerator: Annotated[
        str, typer.Option(help="Lightning accelerator of a sharded build: auto, cpu, gpu.")
    ] = "auto",
    backend: IndexBackendOpt = "torch",
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Embed every image with a model and write a similar-case index (resumes an interrupted build).

    With --devices/--num-nodes above 1, every rank embeds a share and writes a shard; rank 0 merges
    them into the same index a single process would write (not resumable).
    """
    from cxrkit.models.engine import InferenceOptions
    from cxrkit.search import build_index, describe_index

    setup_logging(quiet or as_json)
    index = build_index(
        model,
        data,
        out,
        approx=None if exact is None else not exact,
        inference=InferenceOptions(backend=backend, batch_size=batch_size, num_workers=num_workers),
        chunk_size=chunk_size,
        progress=_progress(quiet, as_json),
        devices=devices,
        num_nodes=num_nodes,
        strategy=strategy,
        accelerator=accelerator,
    )
    if index is None:
        return  # a rank other than 0 of a sharded build: rank 0 writes and reports the index
    _print_index(describe_index(index), as_json)


@index_app.command("add")
@friendly_errors
def add_cmd(
    index_dir: Annotated[Path, typer.Argument(help="An index folder.")],
    data: Annotated[list[str], typer.Argument(help="Dataset paths with the images to add.")],
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="The bundle the index was built with (default: recorded).")
    ] = None,
    batch_size: BatchOpt = 32,
    chunk_size: ChunkOpt = 1024,
    backend: IndexBackendOpt = "torch",
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Append images to an index without re-embedding it (the folder is replaced atomically)."""
    from cxrkit.models.engine import InferenceOptions
    from cxrkit.search import add_to_index, describe_index

    setup_logging(quiet or as_json)
    inference = InferenceOptions(backend=backend, batch_size=batch_size, num_workers=0)
    index = add_to_index(
        index_dir, data, model=model, inference=inference, chunk_size=chunk_size, progress=_progress(quiet, as_json)
    )
    _print_index(describe_index(index), as_json)


def _print_index(desc: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(desc)
        return
    typer.echo(
        f"index: {desc['path']}  {desc['count']} images, dim {desc['dim']}, {desc['index_type']} search, "
        f"model {desc['model']['name']} ({desc['model']['architecture']}, {desc['model']['fingerprint'][:12]})"
    )


@index_app.command("query")
@friendly_errors
def query_cmd(
    index_dir: Annotated[Path, typer.Argument(help="An index folder.")],
    images: Annotated[list[Path], typer.Argument(help="Query image file(s).")],
    k: Annotated[int, typer.Option("-k", "--k", help="Neighbours per query.")] = 36,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="The bundle the index was built with (default: recorded).")
    ] = None,
    grid: Annotated[
        Path | None, typer.Option("--grid", help="Write a 6x6 picture grid (query first) of the first query.")
    ] = None,
    backend: IndexBackendOpt = "torch",
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """The k most similar indexed images (labels, patient, similarity) to each query image."""
    from cxrkit.models.engine import InferenceOptions
    from cxrkit.search import load_index, query_index, similar_cases_grid

    setup_logging(quiet or as_json)
    index = load_index(index_dir)
    results = query_index(index, images, model=model, k=k, inference=InferenceOptions(backend=backend))
    if grid is not None and results:
        similar_cases_grid(results[0], grid)
    if as_json:
        print_json({"index": str(index.path), "model": index.info["model"]["name"], "results": results, "grid": grid})
        return
    for r in results:
        typer.echo(f"query: {r['query']}")
        for h in r["neighbours"]:
            labels = ",".join(h["labels"]) or "-"
            typer.echo(f"  {h['rank']:3d}  {h['similarity']:.4f}  {labels:20s} patient {h['patient_id']}  {h['path']}")
    if grid is not None:
        typer.echo(f"grid: {grid}")


@index_app.command("evaluate")
@friendly_errors
def evaluate_cmd(
    index_dir: Annotated[Path, typer.Argument(help="An index folder.")],
    k: Annotated[int, typer.Option("-k", "--k", help="Neighbours per query.")] = 10,
    max_queries: Annotated[
        int | None, typer.Option(help="Evaluate a random sample of this many images (default: all).")
    ] = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Leave-one-patient-out precision@k and kNN-vote accuracy/AUROC (compare backbones)."""
    from cxrkit.search import evaluate_index

    setup_logging(quiet or as_json)
    result = evaluate_index(index_dir, k=k, max_queries=max_queries)
    if as_json:
        print_json(result)
        return
    typer.echo(f"model {result['model']['name']} ({result['model']['architecture']}), {result['n_queries']} queries")
    typer.echo(f"precision@{result['k']:<3d} {result['precision_at_k']:.4f}")
    for key, v in result["knn"].items():
        typer.echo(f"knn {key:18s} {v if v is None else round(v, 4)}")
    typer.echo(result["protocol"])


def timeline_cmd(
    data: Annotated[list[str], typer.Argument(help="Dataset path(s) holding the patient's images.")],
    model: Annotated[str, typer.Option("--model", "-m", help="A bundle name or folder.")],
    patient: Annotated[str | None, typer.Option("--patient", "-p", help="The patient ID.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Rank every patient with >= 2 studies by drift.")] = False,
    index: Annotated[
        Path | None, typer.Option("--index", help="Index of the same model: adds the severe share among similar cases.")
    ] = None,
    k: Annotated[int, typer.Option("-k", "--k", help="Neighbours for the similar-case severity.")] = 36,
    tolerance: Annotated[float, typer.Option(help="Drift below this (either way) is 'stable'.")] = 0.1,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write the severity trajectory as a PNG.")] = None,
    batch_size: BatchOpt = 32,
    backend: BackendOpt = "torch",
    precision: PrecisionOpt = "auto",
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """A patient's studies in time order with severity and a drift verdict, or (--all) a reading list."""
    from cxrkit.core.errors import ConfigError
    from cxrkit.data import load_datasets
    from cxrkit.models import load_bundle
    from cxrkit.models.engine import InferenceOptions
    from cxrkit.search import load_index, patient_timeline, rank_patients, timeline_plot

    setup_logging(quiet or as_json)
    if (patient is None) == (not all_):
        raise ConfigError("Give either --patient ID (one timeline) or --all (rank every patient), not both or neither.")
    if all_ and plot is not None:
        raise ConfigError("--plot draws one patient's timeline; use it with --patient.")
    bundle = load_bundle(model)
    table = load_datasets(data)
    idx = load_index(index) if index is not None else None
    inference = InferenceOptions(backend=backend, precision=precision, batch_size=batch_size)
    if all_:
        result = rank_patients(
            bundle,
            table,
            index=idx,
            k=k,
            tolerance=tolerance,
            inference=inference,
            progress=_progress(quiet, as_json),
        )
        if as_json:
            print_json(result)
            return
        typer.echo(f"rule: {result['rule']}")
        typer.echo(f"{'patient':>12s} {'studies':>7s} {'first':>6s} {'last':>6s} {'drift':>7s}  verdict")
        for p in result["patients"]:
            typer.echo(
                f"{p['patient_id']:>12s} {p['n_studies']:7d} {p['first_severity']:6.3f} {p['last_severity']:6.3f} "
                f"{p['drift']:+7.3f}  {p['verdict']}"
            )
        return
    result = patient_timeline(bundle, table, str(patient), index=idx, k=k, tolerance=tolerance, inference=inference)
    if plot is not None:
        result["plot"] = str(timeline_plot(result, plot))
    if as_json:
        print_json(result)
        return
    typer.echo(f"patient {result['patient_id']}: {result['n_studies']} studies, {result['order_rule']}")
    for s in result["studies"]:
        probs = ", ".join(f"{c} {v:.3f}" for c, v in s["probabilities"].items())
        ns = f"  similar severe {s['neighbour_severity']:.2f}" if s.get("neighbour_severity") is not None else ""
        when = s["order_value"] if s["order_value"] is not None else s["order_basis"]
        typer.echo(f"  #{s['study']:<3d} {when!s:>12s}  severity {s['severity']:.3f}{ns}  [{probs}]")
    drift = "n/a" if result["drift"] is None else f"{result['drift']:+.3f}"
    typer.echo(f"verdict: {result['verdict']} (drift {drift})")
    typer.echo(f"severity: {result['severity_rule']}")
    typer.echo(f"rule: {result['rule']}")
    if plot is not None:
        typer.echo(f"plot: {plot}")
