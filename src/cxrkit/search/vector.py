"""FAISS inner-product indexes over unit vectors: exact (IndexFlatIP) or approximate (HNSW, IVF).

Cosine similarity of L2-normalised embeddings is their inner product, so every kind uses the
inner-product metric. Exact search stays under 5 ms per query up to ``EXACT_MAX`` vectors; beyond
that an HNSW graph answers in 1-3 ms. From ``IVF_MIN`` vectors an IVF index (inverted lists over
k-means cells) builds 3x faster than HNSW and keeps recall where HNSW starts losing it; it needs
``train_index`` before its first ``add``. Figures: docs/INDEX_BENCHMARK.md.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from cxrkit.core.errors import ConfigError

EXACT = "exact"
HNSW = "hnsw"
IVF = "ivf"
INDEX_TYPES = (EXACT, HNSW, IVF)
# Exact single-query top-36 over N x 1280 float32 costs about 0.28 ms per 1k vectors on one core
# (a scan of N x 5 KB), so 15k vectors stay under the 5 ms target.
EXACT_MAX = 15_000
# HNSW (defaults) keeps recall@36 >= 0.98 up to about 300k clustered vectors, 0.94 at 1M; IVF keeps 0.99+.
IVF_MIN = 200_000


@dataclass(frozen=True)
class HnswParams:
    """HNSW settings (faiss names): ``M`` links per node, ``ef_construction`` and ``ef_search`` beam widths.

    Defaults chosen with ``benchmarks/index_search.py`` on clustered vectors of dim 1280 calibrated
    against real embeddings: recall@36 against exact search 0.9985 at 100k (about 1.6 ms per single
    query on one core), 0.983 at 300k, 0.94 at 1M. ef_construction 64 builds 2.4x faster than 128
    (recall 0.998 instead of 0.9999 at 100k). On random unit vectors (no structure, the worst case)
    no setting is both fast and accurate.
    """

    m: int = 32
    ef_construction: int = 64
    ef_search: int = 512

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> HnswParams:
        d = d or {}
        return cls(**{k: int(d[k]) for k in ("m", "ef_construction", "ef_search") if k in d})


@dataclass(frozen=True)
class IvfParams:
    """IVF settings: ``nlist`` k-means cells (0: ``nlist_for(n)``), ``nprobe`` cells searched per query,
    the coarse ``quantizer`` ('flat', or 'hnsw': only worth it for tens of thousands of cells; at
    4096 it trains and adds 3-5x slower), and k-means on at most ``train_per_list`` x nlist vectors
    for ``niter`` iterations. nprobe 32 gives recall@36 0.998 at 1M (4096 cells), 1.0 at 300k.
    """

    nlist: int = 0
    nprobe: int = 32
    quantizer: str = "flat"
    train_per_list: int = 40
    niter: int = 10

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> IvfParams:
        d = d or {}
        kw: dict[str, Any] = {k: int(d[k]) for k in ("nlist", "nprobe", "train_per_list", "niter") if k in d}
        if "quantizer" in d:
            kw["quantizer"] = str(d["quantizer"])
        return cls(**kw)


def nlist_for(n: int) -> int:
    """About 4 sqrt(n) cells, as a power of two in [64, 65536] (faiss' rule of thumb)."""
    return int(min(65536, max(64, 2 ** round(math.log2(4 * math.sqrt(max(n, 1)))))))


def choose_index_type(n: int, approx: bool | str | None = None, *, ivf_ok: bool = False) -> str:
    """The index type for ``n`` vectors.

    ``approx``: True for HNSW, False for exact, or an index type by name; None chooses: exact up
    to ``EXACT_MAX`` vectors, then HNSW, then IVF from ``IVF_MIN`` when ``ivf_ok`` (the caller
    calls ``train_index`` before adding; without it HNSW stays, which needs no training).
    """
    if isinstance(approx, str):
        if approx not in INDEX_TYPES:
            raise ConfigError(f"Unknown index type {approx!r}; valid: {', '.join(INDEX_TYPES)}.")
        return approx
    if approx is None:
        if n <= EXACT_MAX:
            return EXACT
        return IVF if ivf_ok and n >= IVF_MIN else HNSW
    return HNSW if approx else EXACT


def new_faiss_index(
    dim: int, index_type: str, hnsw: HnswParams | None = None, *, ivf: IvfParams | None = None, n: int | None = None
) -> Any:
    """An empty faiss index for unit vectors of ``dim`` dimensions (inner-product metric).

    ``n`` (the expected number of vectors) sizes an IVF index whose ``nlist`` is 0; an IVF index
    must be given to ``train_index`` before vectors are added.
    """
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
    if index_type == IVF:
        p = ivf or IvfParams()
        nlist = p.nlist or nlist_for(n or 0)
        if p.quantizer == "flat":
            quantizer = faiss.IndexFlatIP(dim)
        elif p.quantizer == "hnsw":
            quantizer = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
            quantizer.hnsw.efSearch = max(64, 2 * p.nprobe)
        else:
            raise ConfigError(f"Unknown IVF quantizer {p.quantizer!r}; valid: flat, hnsw.")
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        # Unit-length centroids: assigning by inner product then equals assigning by distance.
        index.cp.spherical = True
        index.cp.niter = p.niter
        index.nprobe = min(p.nprobe, nlist)
        return index
    raise ConfigError(f"Unknown index type {index_type!r}; valid: {', '.join(INDEX_TYPES)}.")


def train_index(index: Any, vectors: np.ndarray, ivf: IvfParams | None = None, seed: int = 0) -> None:
    """Train an IVF index's k-means cells on (a random sample of) ``vectors``; no-op for other kinds."""
    if index.is_trained:
        return
    p = ivf or IvfParams()
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    if len(x) < index.nlist:
        raise ConfigError(
            f"An IVF index of {index.nlist} cells needs at least that many vectors to train, got {len(x)}."
        )
    cap = p.train_per_list * index.nlist
    if len(x) > cap:
        x = x[np.sort(np.random.default_rng(seed).choice(len(x), cap, replace=False))]
    index.cp.max_points_per_centroid = max(p.train_per_list, 1)  # faiss would otherwise subsample too, noisily
    index.train(x)


def set_ef_search(index: Any, ef_search: int) -> None:
    """Set the HNSW search beam (no-op for exact indexes)."""
    if hasattr(index, "hnsw"):
        index.hnsw.efSearch = int(ef_search)


def search_raw(
    index: Any, queries: np.ndarray, k: int, ef_search: int | None = None, nprobe: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """faiss search: similarities and row ids (Q x k; -1 / -inf where fewer than k exist)."""
    q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
    k = int(min(k, index.ntotal))
    if k <= 0 or q.shape[0] == 0:
        return np.zeros((q.shape[0], 0), np.float32), np.zeros((q.shape[0], 0), np.int64)
    if ef_search is not None:
        set_ef_search(index, max(int(ef_search), k))
    if nprobe is not None and hasattr(index, "nprobe"):
        index.nprobe = int(nprobe)
    sims, ids = index.search(q, k)
    return sims, ids


def all_vectors(index: Any) -> np.ndarray:
    """Every stored vector (N x D), in insertion order."""
    if index.ntotal == 0:
        return np.zeros((0, index.d), np.float32)
    if hasattr(index, "make_direct_map") and not index.direct_map.type:
        index.make_direct_map()  # IVF stores vectors by cell; reconstruct needs the id -> cell map
    return index.reconstruct_n(0, index.ntotal)
