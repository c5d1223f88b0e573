"""A similar-case index: image embeddings of one model in FAISS, plus who and what each image is.

Layout of an index folder (written atomically: an interrupted build never replaces a good index)::

    <index>/
      index.json     model fingerprint + architecture, embedding dim, count, index type, label space
      index.faiss    the vectors (L2-normalised penultimate features; similarity = cosine)
      metadata.csv   one row per vector: path, patient_id, study_date, offset, view, split, source, labels
      labels.npy     float32 N x C label matrix (1 / 0 / NaN), columns = index.json's label_space

index.json's ``checksums`` hold the SHA-256 of the other three files; ``load_index`` verifies them, so a
flipped byte in the vectors is an error, never silently different answers.

While building, finished embedding chunks are kept in ``<index>.partial/`` so a rerun resumes.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import cxrkit
from cxrkit.core.errors import ConfigError, CxrkitError, DataFormatError
from cxrkit.core.files import atomic_dir, sha256_file
from cxrkit.core.jsonable import json_text
from cxrkit.core.task import LabelSpace
from cxrkit.data.align import align_labels
from cxrkit.data.load import load_datasets
from cxrkit.data.table import COLUMNS, CxrTable
from cxrkit.models.bundle import Bundle, load_bundle
from cxrkit.models.engine import InferenceOptions
from cxrkit.search.embeddings import DEFAULT_CHUNK_SIZE, embed_paths, embed_table, index_options
from cxrkit.search.errors import IndexFormatError, ModelMismatchError
from cxrkit.search.vector import (
    HnswParams,
    all_vectors,
    choose_index_type,
    new_faiss_index,
    search_raw,
    train_index,
)

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
INFO_FILE = "index.json"
VECTORS_FILE = "index.faiss"
META_FILE = "metadata.csv"
LABELS_FILE = "labels.npy"
FILES = (INFO_FILE, VECTORS_FILE, META_FILE, LABELS_FILE)
META_COLUMNS = (*COLUMNS, "follow_up")
_STR_COLUMNS = ("path", "patient_id", "study_date", "view", "split", "source")


def work_dir_for(out: str | Path) -> Path:
    """Folder beside ``out`` that holds the finished embedding chunks of an unfinished build."""
    out = Path(out)
    return out.with_name(out.name + ".partial")


@dataclass
class CaseIndex:
    """A loaded index. ``frame`` and ``labels`` are row-aligned with the vectors in ``faiss_index``."""

    path: Path
    info: dict[str, Any]
    faiss_index: Any
    frame: pd.DataFrame
    labels: np.ndarray
    label_space: LabelSpace

    def __len__(self) -> int:
        return int(self.faiss_index.ntotal)

    @property
    def fingerprint(self) -> str:
        return str(self.info["model"]["fingerprint"])

    @property
    def dim(self) -> int:
        return int(self.info["dim"])

    @property
    def index_type(self) -> str:
        return str(self.info["index_type"])

    def groups(self) -> np.ndarray:
        """Patient key per row (``source:patient``), or the image path where the patient is unknown."""
        return group_keys(self.frame)

    def vectors(self) -> np.ndarray:
        return all_vectors(self.faiss_index)

    def label_names(self, row: int) -> list[str]:
        """Classes marked present (1) in row ``row``."""
        return [c for c, v in zip(self.label_space.classes, self.labels[row], strict=True) if v == 1]

    def search(
        self,
        queries: np.ndarray,
        k: int,
        exclude_groups: Sequence[str | None] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` most similar rows per query: (similarities, row ids), Q x k, -1 / NaN padded.

        Args:
            queries: Q x D normalised embeddings.
            k: neighbours per query.
            exclude_groups: per query, a patient key (see ``groups``) whose rows are left out
                (leave-one-patient-out); None entries exclude nothing.
        """
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if queries.shape[1] != self.dim:
            raise ModelMismatchError(
                f"Query embeddings have {queries.shape[1]} dimensions but index {self.path} holds {self.dim}: "
                "they come from a different model. Fix: query with the model the index was built with."
            )
        k = int(k)
        if k < 1:
            raise ConfigError(f"k must be >= 1, got {k}.")
        ef = int(self.info.get("hnsw", {}).get("ef_search", 0)) if self.info.get("hnsw") else None
        q = len(queries)
        out_sims = np.full((q, k), np.nan, np.float32)
        out_ids = np.full((q, k), -1, np.int64)
        if exclude_groups is None or all(g is None for g in exclude_groups):
            sims, ids = search_raw(self.faiss_index, queries, k, ef)
            out_sims[:, : sims.shape[1]] = np.where(ids >= 0, sims, np.nan)
            out_ids[:, : ids.shape[1]] = ids
            return out_sims, out_ids
        groups = self.groups()
        # Fetching k + the largest patient's image count guarantees k others (for exact search).
        extra = int(pd.Series(groups).value_counts().max()) if len(groups) else 0
        sims, ids = search_raw(self.faiss_index, queries, k + extra, ef)
        for i in range(q):
            keep = ids[i] >= 0
            if exclude_groups[i] is not None:
                keep &= groups[np.clip(ids[i], 0, None)] != exclude_groups[i]
            sel_ids, sel_sims = ids[i][keep][:k], sims[i][keep][:k]
            out_ids[i, : len(sel_ids)] = sel_ids
            out_sims[i, : len(sel_sims)] = sel_sims
        return out_sims, out_ids

    def hit(self, row: int, similarity: float, rank: int) -> dict[str, Any]:
        """A JSON-friendly description of one neighbour."""
        rec = self.frame.iloc[row]

        def val(col: str) -> Any:
            v = rec.get(col)
            return None if v is None or pd.isna(v) else (v.item() if hasattr(v, "item") else v)

        return {
            "rank": rank,
            "row": int(row),
            "similarity": round(float(similarity), 6),
            "path": val("path"),
            "labels": self.label_names(row),
            "patient_id": val("patient_id"),
            "study_date": val("study_date"),
            "offset": val("offset"),
            "view": val("view"),
            "source": val("source"),
        }


def group_keys(frame: pd.DataFrame) -> np.ndarray:
    """``patient:<source>:<patient_id>``, or ``image:<path>`` where the patient is unknown."""
    pid = frame["patient_id"].astype("object")
    src = frame["source"].astype("object").where(frame["source"].notna(), "")
    return np.where(
        pid.isna(),
        "image:" + frame["path"].astype(str),
        "patient:" + src.astype(str) + ":" + pid.astype(str),
    ).astype(str)


# -- writing ---------------------------------------------------------------------------------------
def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _model_info(bundle: Bundle, model_ref: str | Path | None) -> dict[str, Any]:
    return {
        "fingerprint": bundle.fingerprint,
        "architecture": bundle.architecture,
        "name": str(model_ref) if model_ref is not None else bundle.path.name,
        "bundle_path": str(Path(bundle.path).resolve()),
        "label_space": bundle.label_space.to_dict(),
        "preprocessing": bundle.preprocessing.to_dict(),
    }


def _metadata_frame(table: CxrTable) -> pd.DataFrame:
    frame = table.frame.copy()
    cols = [c for c in META_COLUMNS if c in frame.columns]
    meta = frame[cols].copy()
    meta["labels"] = ["|".join(c for c, v in zip(table.classes, row, strict=True) if v == 1) for row in table.labels]
    return meta


def _write(
    out: Path,
    info: dict[str, Any],
    faiss_index: Any,
    meta: pd.DataFrame,
    labels: np.ndarray,
) -> None:
    import faiss

    if not (faiss_index.ntotal == len(meta) == len(labels)):
        raise IndexFormatError(
            f"Internal inconsistency: {faiss_index.ntotal} vectors, {len(meta)} metadata rows, {len(labels)} labels."
        )
    info = {**info, "count": int(faiss_index.ntotal), "files": list(FILES)}
    with atomic_dir(out) as tmp:
        faiss.write_index(faiss_index, str(tmp / VECTORS_FILE))
        meta.to_csv(tmp / META_FILE, index=False)
        with open(tmp / LABELS_FILE, "wb") as f:
            np.save(f, np.asarray(labels, np.float32), allow_pickle=False)
        info["checksums"] = {name: sha256_file(tmp / name) for name in (VECTORS_FILE, META_FILE, LABELS_FILE)}
        # index.json last: its presence marks a complete folder.
        (tmp / INFO_FILE).write_text(json_text(info, lenient=True), encoding="utf-8")


def _verify_checksums(path: Path, info: dict[str, Any], fix: str) -> None:
    """Compare each file's SHA-256 with index.json's (indexes written before checksums have none: skipped)."""
    sums = info.get("checksums")
    if not sums:
        log.warning("Index %s has no checksums (built by an older cxrkit); rebuild it to have them checked.", path)
        return
    bad = [name for name, want in sums.items() if sha256_file(path / name) != want]
    if bad:
        raise IndexFormatError(
            f"Index {path} is corrupt: the SHA-256 of {', '.join(bad)} differs from index.json (a changed or "
            f"damaged file). {fix}"
        )


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

        vectors = embed_table_sharded(
            bundle,
            table,
            work,
            devices=devices,
            num_nodes=num_nodes,
            strategy=strategy,
            accelerator=accelerator,
            inference=inference,
            progress=progress,
        )
        if vectors is None:
            return None
    else:
        vectors = embed_table(bundle, table, inference, chunk_size=chunk_size, work_dir=work, progress=progress)
    # IVF from IVF_MIN vectors: at 1M it keeps recall@36 at 0.998 where HNSW falls to 0.94 (docs/INDEX_BENCHMARK.md).
    index_type = choose_index_type(len(vectors), approx, ivf_ok=True)
    params = hnsw or HnswParams()
    faiss_index = new_faiss_index(vectors.shape[1], index_type, params, n=len(vectors))
    train_index(faiss_index, vectors)
    faiss_index.add(vectors)
    now = _now()
    info = {
        "format_version": FORMAT_VERSION,
        "similarity": "cosine (inner product of L2-normalised penultimate-layer embeddings)",
        "index_type": index_type,
        "faiss_class": type(faiss_index).__name__,
        "hnsw": params.to_dict() if index_type == "hnsw" else None,
        "ivf": {"nlist": int(faiss_index.nlist), "nprobe": int(faiss_index.nprobe)} if index_type == "ivf" else None,
        "dim": int(vectors.shape[1]),
        "model": _model_info(bundle, ref),
        "label_space": table.label_space.to_dict(),
        "sources": sorted({str(s) for s in table.frame["source"].dropna().unique()}),
        "created": now,
        "updated": now,
        "code_version": cxrkit.__version__,
    }
    _write(out, info, faiss_index, _metadata_frame(table), table.labels)
    shutil.rmtree(work, ignore_errors=True)
    log.info("Index of %d images (%s, dim %d) written to %s.", len(vectors), index_type, vectors.shape[1], out)
    return load_index(out)


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
    meta = pd.concat([index.frame, _metadata_frame(table)], ignore_index=True)
    all_labels = np.concatenate([index.labels, table.labels])
    sources = sorted(set(index.info.get("sources") or []) | {str(s) for s in table.frame["source"].dropna().unique()})
    info = {**index.info, "sources": sources, "updated": _now(), "code_version": cxrkit.__version__}
    _write(index.path, info, index.faiss_index, meta, all_labels)
    shutil.rmtree(work, ignore_errors=True)
    return load_index(index.path)


# -- reading ---------------------------------------------------------------------------------------
def load_index(path: str | Path) -> CaseIndex:
    """Load an index folder and check that it is complete and consistent.

    Raises:
        IndexFormatError: the folder or a file is missing, unreadable, or the counts disagree.
    """
    import faiss

    path = Path(path).expanduser()
    fix = f"Fix: rebuild it with `cxr index build --model MODEL DATA --out {path}`."
    if not path.is_dir():
        partial = work_dir_for(path)
        extra = f" An unfinished build left {partial}; rerun the same build to resume." if partial.is_dir() else ""
        raise IndexFormatError(f"No index folder at {path}.{extra} {fix}")
    missing = [f for f in FILES if not (path / f).is_file()]
    if missing:
        raise IndexFormatError(f"Index {path} is incomplete: missing {', '.join(missing)}. {fix}")
    try:
        info = json.loads((path / INFO_FILE).read_text(encoding="utf-8"))
        _verify_checksums(path, info, fix)
        faiss_index = faiss.read_index(str(path / VECTORS_FILE))
        frame = pd.read_csv(path / META_FILE, dtype={c: "string" for c in _STR_COLUMNS}, keep_default_na=True)
        labels = np.load(path / LABELS_FILE, allow_pickle=False)
        label_space = LabelSpace.from_dict(info["label_space"])
        info["model"]["fingerprint"], int(info["dim"]), int(info["count"]), info["index_type"]
    except IndexFormatError:
        raise
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, CxrkitError) as err:
        raise IndexFormatError(f"Index {path} cannot be read ({str(err)[:300]}). {fix}") from err
    counts = {
        "index.json count": int(info["count"]),
        "vectors": int(faiss_index.ntotal),
        "metadata rows": len(frame),
        "label rows": int(labels.shape[0]),
    }
    if len(set(counts.values())) != 1:
        raise IndexFormatError(f"Index {path} is inconsistent: {counts}. {fix}")
    if faiss_index.d != int(info["dim"]) or labels.ndim != 2 or labels.shape[1] != len(label_space.classes):
        raise IndexFormatError(
            f"Index {path} is inconsistent: vectors of dim {faiss_index.d} (index.json: {info['dim']}), "
            f"labels {labels.shape} for classes {list(label_space.classes)}. {fix}"
        )
    if "offset" in frame.columns:
        frame["offset"] = pd.to_numeric(frame["offset"], errors="coerce")
    if info.get("hnsw"):
        faiss_index.hnsw.efSearch = int(info["hnsw"].get("ef_search", HnswParams().ef_search))
    return CaseIndex(path, info, faiss_index, frame, labels.astype(np.float32), label_space)


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
