"""A similar-case index: image embeddings of one model in FAISS, plus who and what each image is.

Building, extending, querying and describing one; the folder format (its files, checksums), ``CaseIndex``
and loading live in ``cxrkit.search.index_files``.

While building, finished embedding chunks are kept in ``<index>.partial/`` so a rerun resumes.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import cxrkit
from cxrkit.core.errors import ConfigError, CxrkitError, DataFormatError
from cxrkit.data.align import align_labels
from cxrkit.data.load import load_datasets
from cxrkit.data.table import CxrTable
from cxrkit.models.bundle import Bundle, load_bundle
from cxrkit.models.engine import InferenceOptions
from cxrkit.search.embeddings import DEFAULT_CHUNK_SIZE, embed_paths, embed_table, index_options
from cxrkit.search.errors import ModelMismatchError
from cxrkit.search.index_files import (
    FORMAT_VERSION,
    CaseIndex,
    load_index,
    metadata_frame,
    now_iso,
    work_dir_for,
    write_index_folder,
)
from cxrkit.search.vector import (
    HnswParams,
    choose_index_type,
    new_faiss_index,
    train_index,
)

log = logging.getLogger(__name__)


# -- writing ---------------------------------------------------------------------------------------
def _model_info(bundle: Bundle, model_ref: str | Path | None) -> dict[str, Any]:
    return {
        "fingerprint": bundle.fingerprint,
        "architecture": bundle.architecture,
        "name": str(model_ref) if model_ref is not None else bundle.path.name,
        "bundle_path": str(Path(bundle.path).resolve()),
        "label_space": bundle.label_space.to_dict(),
        "preprocessing": bundle.preprocessing.to_dict(),
    }


def _as_table(data: CxrTable | Sequence[str | Path] | str | Path) -> CxrTable:
    if isinstance(data, CxrTable):
        table = data
    else:
        specs = [data] if isinstance(data, str | Path) else list(data)
        table = load_datasets(specs)
    if len(table) == 0:
        raise DataFormatError("No images to index: the dataset is empty.")
    return table


def _as_bundle(model: Bundle | str | Path) -> tuple[Bundle, str | Path | None]:
    if isinstance(model, Bundle):
        return model, None
    return load_bundle(model), model


def build_index(
    model: Bundle | str | Path,
    data: CxrTable | Sequence[str | Path] | str | Path,
    out: str | Path,
    approx: bool | None = None,
    inference: InferenceOptions | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    hnsw: HnswParams | None = None,
    progress: bool = False,
    devices: int = 1,
    num_nodes: int = 1,
    strategy: str = "ddp",
    accelerator: str = "auto",
) -> CaseIndex | None:
    """Embed every image of ``data`` with ``model`` and write a searchable index folder at ``out``.

    Resumable: finished chunks are kept in ``<out>.partial/`` (removed once the index is written);
    rerunning the same build skips them. The folder is swapped in atomically, so an interrupted
    build leaves an older index at ``out`` untouched and loadable.

    With ``devices * num_nodes > 1`` the images are embedded by that many Lightning ranks, each
    writing one shard to ``<out>.partial/shards/`` that is merged back into table order (see
    ``cxrkit.search.sharded``): the index equals a single-process build. Such a build does not
    resume. Under ``ddp``, torchrun or SLURM every rank runs this function and only global rank 0
    writes the index; the others return None. Under ``ddp_spawn`` the calling process writes it.

    Args:
        model: a bundle, bundle name or bundle folder.
        data: a table, or dataset specs for ``cxrkit.data.load_datasets``.
        out: the index folder (replaced if it exists).
        approx: True for HNSW, False for exact search, None: exact up to ``EXACT_MAX`` images.
        inference: backend, device, batch size and decode workers (default: torch, no workers); the
            embeddings are fp32 whatever its precision (``index_options``).
        chunk_size: images per resumable chunk.
        hnsw: HNSW settings (default ``HnswParams()``).
        progress: show a progress bar.
        devices: processes (GPUs) per node; above 1 (or with ``num_nodes`` above 1) a sharded build.
        num_nodes: machines of a sharded build.
        strategy: ``ddp`` or ``ddp_spawn`` (sharded build only).
        accelerator: Lightning accelerator of a sharded build (``auto``, ``cpu``, ``gpu``).

    Returns:
        The loaded index (None on the non-writing ranks of a sharded build).
    """
    bundle, ref = _as_bundle(model)
    table = _as_table(data)
    inference = index_options(inference or InferenceOptions(num_workers=0))
    out = Path(out)
    work = work_dir_for(out)
    if int(devices) * int(num_nodes) > 1:
        from cxrkit.search.sharded import embed_table_sharded  # imports Lightning: only for this path

        ranks = {"devices": devices, "num_nodes": num_nodes, "strategy": strategy, "accelerator": accelerator}
        vectors = embed_table_sharded(bundle, table, work, inference=inference, progress=progress, **ranks)
        if vectors is None:
            return None
    else:
        vectors = embed_table(bundle, table, inference, chunk_size=chunk_size, work_dir=work, progress=progress)
    faiss_index, info = _new_faiss(vectors, approx, hnsw)
    now = now_iso()
    info.update(
        model=_model_info(bundle, ref),
        label_space=table.label_space.to_dict(),
        sources=sorted(_sources(table)),
        created=now,
        updated=now,
        code_version=cxrkit.__version__,
    )
    write_index_folder(out, info, faiss_index, metadata_frame(table), table.labels)
    shutil.rmtree(work, ignore_errors=True)
    log.info("Index of %d images (%s, dim %d) written to %s.", len(vectors), info["index_type"], info["dim"], out)
    return load_index(out)


def _new_faiss(vectors: np.ndarray, approx: bool | None, hnsw: HnswParams | None) -> tuple[Any, dict[str, Any]]:
    """A FAISS index holding ``vectors`` and the part of index.json that describes it."""
    # IVF from IVF_MIN vectors: at 1M it keeps recall@36 at 0.998 where HNSW falls to 0.94 (docs/INDEX_BENCHMARK.md).
    index_type = choose_index_type(len(vectors), approx, ivf_ok=True)
    params = hnsw or HnswParams()
    faiss_index = new_faiss_index(vectors.shape[1], index_type, params, n=len(vectors))
    train_index(faiss_index, vectors)
    faiss_index.add(vectors)
    info = {
        "format_version": FORMAT_VERSION,
        "similarity": "cosine (inner product of L2-normalised penultimate-layer embeddings)",
        "index_type": index_type,
        "faiss_class": type(faiss_index).__name__,
        "hnsw": params.to_dict() if index_type == "hnsw" else None,
        "ivf": {"nlist": int(faiss_index.nlist), "nprobe": int(faiss_index.nprobe)} if index_type == "ivf" else None,
        "dim": int(vectors.shape[1]),
    }
    return faiss_index, info


def _sources(table: CxrTable) -> set[str]:
    return {str(s) for s in table.frame["source"].dropna().unique()}


def _align_labels(index: CaseIndex, table: CxrTable) -> np.ndarray:
    """``table``'s labels in the column order of the index (classes matched case-insensitively)."""
    ours = [c.lower() for c in index.label_space.classes]
    theirs = [c.lower() for c in table.classes]
    if sorted(ours) != sorted(theirs):
        raise DataFormatError(
            f"The new images have classes {list(table.classes)} but the index has {list(index.label_space.classes)}. "
            "Fix: select matching classes (DATA::CLASS_A,CLASS_B) or build a new index over all the data."
        )
    return align_labels(table, index.label_space.classes)


def add_to_index(
    index_dir: str | Path,
    data: CxrTable | Sequence[str | Path] | str | Path,
    model: Bundle | str | Path | None = None,
    inference: InferenceOptions | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: bool = False,
) -> CaseIndex:
    """Append images to an existing index without re-embedding the old ones; the folder is replaced atomically.

    Images whose path is already indexed are skipped. For an exact index the result equals a full
    rebuild on the union (same vectors, same order, same answers); an HNSW index inserts the new
    vectors into its graph (answers equal a rebuild up to the approximation).

    Args:
        index_dir: the index folder.
        data: a table or dataset specs.
        model: the bundle the index was built with (default: the one recorded, if it can be found).
        inference: as in ``build_index``.
    """
    index = load_index(index_dir)
    bundle = resolve_index_model(index, model)
    table = _as_table(data)
    labels = _align_labels(index, table)
    known = set(index.frame["path"].astype(str))
    new = ~table.frame["path"].astype(str).isin(known).to_numpy()
    if not new.all():
        log.info("%d of %d images are already in the index; skipped.", int((~new).sum()), len(table))
    if not new.any():
        return index
    table = table.subset(new).with_label_space(index.label_space, labels[new])
    work = work_dir_for(index.path)
    inference = inference or InferenceOptions(num_workers=0)
    vectors = embed_table(bundle, table, inference, chunk_size=chunk_size, work_dir=work, progress=progress)
    index.faiss_index.add(vectors)
    meta = pd.concat([index.frame, metadata_frame(table)], ignore_index=True)
    all_labels = np.concatenate([index.labels, table.labels])
    sources = sorted(set(index.info.get("sources") or []) | _sources(table))
    info = {**index.info, "sources": sources, "updated": now_iso(), "code_version": cxrkit.__version__}
    write_index_folder(index.path, info, index.faiss_index, meta, all_labels)
    shutil.rmtree(work, ignore_errors=True)
    return load_index(index.path)


def check_model(index: CaseIndex, bundle: Bundle) -> None:
    """Refuse to compare ``bundle``'s embeddings with an index built from another model.

    Raises:
        ModelMismatchError: the fingerprints (sha256 of the weights) differ; the message names both and the fix.
    """
    if bundle.fingerprint != index.fingerprint:
        rec = index.info["model"]
        raise ModelMismatchError(
            f"Index {index.path} was built with model {rec.get('name')!r} ({rec.get('architecture')}, fingerprint "
            f"{index.fingerprint[:16]}...) but the query model {bundle.path.name!r} ({bundle.architecture}) has "
            f"fingerprint {bundle.fingerprint[:16]}...: their embeddings are not comparable. Fix: query with "
            f"--model {rec.get('bundle_path') or rec.get('name')}, or rebuild the index with this model "
            f"(`cxr index build --model {bundle.path} DATA... --out NEW_INDEX`)."
        )


def resolve_index_model(index: CaseIndex, model: Bundle | str | Path | None = None) -> Bundle:
    """The bundle to embed queries with: ``model`` if given (checked), else the one recorded in the index."""
    if model is None:
        rec = index.info["model"]
        bundle = None
        for ref in (rec.get("bundle_path"), rec.get("name")):
            if not ref:
                continue
            try:
                bundle = load_bundle(ref)
                break
            except CxrkitError:
                continue
        if bundle is None:
            raise ConfigError(
                f"Index {index.path} was built with model {rec.get('name')!r} (recorded at {rec.get('bundle_path')}), "
                "which cannot be found here. Fix: pass --model with that bundle (fingerprint "
                f"{index.fingerprint[:16]}...)."
            )
    else:
        bundle = model if isinstance(model, Bundle) else load_bundle(model)
    check_model(index, bundle)
    return bundle


def query_index(
    index: CaseIndex | str | Path,
    images: Sequence[str | Path] | str | Path,
    model: Bundle | str | Path | None = None,
    k: int = 36,
    inference: InferenceOptions | None = None,
) -> list[dict[str, Any]]:
    """The ``k`` most similar indexed images to each query image (embedded with ``inference``, in fp32).

    Returns:
        One dict per query image: ``query`` (path), ``k`` and ``neighbours`` (list of ``CaseIndex.hit``
        dicts: rank, row, similarity, path, labels, patient_id, study_date, offset, view, source).

    Raises:
        ModelMismatchError: ``model`` is not the model the index was built with.
    """
    if not isinstance(index, CaseIndex):
        index = load_index(index)
    bundle = resolve_index_model(index, model)
    paths = [images] if isinstance(images, str | Path) else list(images)
    vectors = embed_paths(bundle, paths, inference)
    sims, ids = index.search(vectors, k)
    results = []
    for p, srow, irow in zip(paths, sims, ids, strict=True):
        hits = [index.hit(int(i), float(s), r + 1) for r, (s, i) in enumerate(zip(srow, irow, strict=True)) if i >= 0]
        results.append({"query": str(p), "k": int(k), "neighbours": hits})
    return results


def describe_index(index: CaseIndex) -> dict[str, Any]:
    """Summary of an index for listings and JSON output."""
    return {
        "path": str(index.path),
        "count": len(index),
        "dim": index.dim,
        "index_type": index.index_type,
        "model": {k: index.info["model"].get(k) for k in ("name", "architecture", "fingerprint")},
        "classes": list(index.label_space.classes),
        "sources": index.info.get("sources"),
    }
