"""FAISS inner-product indexes over unit vectors: exact (IndexFlatIP) or approximate (IndexHNSWFlat).

Cosine similarity of L2-normalised embeddings is their inner product, so both kinds use the
inner-product metric. Exact search stays fast (a few ms per query) up to ``EXACT_MAX`` vectors;
beyond that, or when asked, an HNSW graph is used.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from cxrkit.core.errors import ConfigError

EXACT = "exact"
HNSW = "hnsw"
INDEX_TYPES = (EXACT, HNSW)
# Exact top-36 over 200k x 1280 float32 is about a GEMV over 1 GB: still interactive on one core.
EXACT_MAX = 200_000


@dataclass(frozen=True)
class HnswParams:
    """HNSW settings (faiss names): ``M`` links per node, ``ef_construction`` and ``ef_search`` beam widths.

    Defaults chosen with ``benchmarks/index_search.py``: on 10k random unit vectors of dim 1280 (the
    hardest case: real embeddings cluster, which helps HNSW) recall@36 against exact search is 0.71 at
    ef_search 128, 0.90 at 256 and 0.99 at 512 (about 2 ms per single query on one core).
    """

    m: int = 32
    ef_construction: int = 128
    ef_search: int = 512

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> HnswParams:
        d = d or {}
        return cls(**{k: int(d[k]) for k in ("m", "ef_construction", "ef_search") if k in d})


def choose_index_type(n: int, approx: bool | None = None) -> str:
    """'hnsw' when ``approx`` is True, 'exact' when False; when None, exact up to ``EXACT_MAX`` vectors."""
    if approx is None:
        return HNSW if n > EXACT_MAX else EXACT
    return HNSW if approx else EXACT


def new_faiss_index(dim: int, index_type: str, hnsw: HnswParams | None = None) -> Any:
    """An empty faiss index for unit vectors of ``dim`` dimensions (inner-product metric)."""
    import faiss

    if dim < 1:
        raise ConfigError(f"Embedding dimension must be >= 1, got {dim}.")
    if index_type == EXACT:
        return faiss.IndexFlatIP(dim)
    if index_type == HNSW:
        p = hnsw or HnswParams()
        index = faiss.IndexHNSWFlat(dim, p.m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = p.ef_construction
        index.hnsw.efSearch = p.ef_search
        return index
    raise ConfigError(f"Unknown index type {index_type!r}; valid: {', '.join(INDEX_TYPES)}.")


def set_ef_search(index: Any, ef_search: int) -> None:
    """Set the HNSW search beam (no-op for exact indexes)."""
    if hasattr(index, "hnsw"):
        index.hnsw.efSearch = int(ef_search)


def search_raw(index: Any, queries: np.ndarray, k: int, ef_search: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """faiss search: similarities and row ids (Q x k; -1 / -inf where fewer than k exist)."""
    q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
    k = int(min(k, index.ntotal))
    if k <= 0 or q.shape[0] == 0:
        return np.zeros((q.shape[0], 0), np.float32), np.zeros((q.shape[0], 0), np.int64)
    if ef_search is not None:
        set_ef_search(index, max(int(ef_search), k))
    sims, ids = index.search(q, k)
    return sims, ids


def all_vectors(index: Any) -> np.ndarray:
    """Every stored vector (N x D), in insertion order."""
    if index.ntotal == 0:
        return np.zeros((0, index.d), np.float32)
    return index.reconstruct_n(0, index.ntotal)
