"""The index folder: its files, ``CaseIndex`` (a loaded index), writing one atomically and loading it.

Layout (written atomically: an interrupted build never replaces a good index)::

    <index>/
      index.json     model fingerprint + architecture, embedding dim, count, index type, label space
      index.faiss    the vectors (L2-normalised penultimate features; similarity = cosine)
      metadata.csv   one row per vector: path, patient_id, study_date, offset, view, split, source, labels
      labels.npy     float32 N x C label matrix (1 / 0 / NaN), columns = index.json's label_space

index.json's ``checksums`` hold the SHA-256 of the other three files; ``load_index`` verifies them, so a
flipped byte in the vectors is an error, never silently different answers.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cxrkit.core.errors import ConfigError, CxrkitError
from cxrkit.core.files import atomic_dir, sha256_file
from cxrkit.core.jsonable import json_text
from cxrkit.core.task import LabelSpace
from cxrkit.data.table import COLUMNS, CxrTable
from cxrkit.search.errors import IndexFormatError, ModelMismatchError
from cxrkit.search.vector import HnswParams, all_vectors, search_raw

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
def now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def metadata_frame(table: CxrTable) -> pd.DataFrame:
    frame = table.frame.copy()
    cols = [c for c in META_COLUMNS if c in frame.columns]
    meta = frame[cols].copy()
    meta["labels"] = ["|".join(c for c, v in zip(table.classes, row, strict=True) if v == 1) for row in table.labels]
    return meta


def write_index_folder(
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
