"""Similar-case search: build throughput, single-query top-k latency and recall of cxrkit's indexes (JSON).

    nice -n 19 .venv/bin/python benchmarks/index_search.py --sizes 10000 100000 --index exact hnsw ivf

For each size and index (made by ``cxrkit.search.vector``'s ``new_faiss_index`` and ``train_index``
with its defaults unless overridden, vectors added in blocks of 50k): build time and vectors/s
(IVF: k-means training included), resident memory the index added, and for each search setting
single-query top-k latency p50/p95 (ms) and recall@k against exact search. 1280 is
efficientnet_lite0's embedding dimension. Results and the exact commands: docs/INDEX_BENCHMARK.md.

Data. ``--data clustered`` (default, used for the reported figures) draws L2-normalised vectors
from a fixed mixture of ``--clusters`` Gaussian clusters of uneven size in a ``--subspace``-dimensional
subspace, plus isotropic noise in all dimensions. That is how penultimate-layer embeddings of
images look: a few hundred directions carry most of the variance, and images group by finding,
view, scanner and source. ``--data random`` (i.i.d. Gaussian unit vectors) has no such structure:
every neighbour is about as far as every other, the worst case for graph (HNSW) and inverted-list
(IVF) indexes, so it is kept as the stated lower bound. The default mixture was calibrated with
``--calibrate`` against 6.5k real efficientnet_lite0 embeddings of chest X-rays (Kaggle pneumonia,
NIH, COVID collection): with the same weak index settings its recall@36 is below the real data's
at the high-recall end (HNSW at every ef, IVF from nprobe 16 of 128), so settings that reach a
recall here reach it on those embeddings too. ``--calibrate`` also prints relative contrast and
local intrinsic dimension, two standard predictors of search difficulty.

Vectors are generated in blocks from per-block seeds, so 1M x 1280 (5.1 GB) is never held twice:
the exact index is built, timed and used for the ground truth first, then freed, and the data are
regenerated for each approximate index.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import platform
import resource
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from cxrkit.search import l2_normalise
from cxrkit.search.vector import (
    EXACT,
    HNSW,
    IVF,
    HnswParams,
    IvfParams,
    new_faiss_index,
    search_raw,
    train_index,
)

BLOCK = 50_000
Sampler = Callable[[int, int], np.ndarray]  # (n, seed) -> n x dim unit vectors


def random_sampler(dim: int) -> Sampler:
    def sample(n: int, seed: int) -> np.ndarray:
        return l2_normalise(np.random.default_rng(seed).standard_normal((n, dim), dtype=np.float32))

    return sample


def clustered_sampler(
    dim: int, clusters: int, subspace: int, spread: float, noise: float, world_seed: int = 12345
) -> Sampler:
    """A fixed mixture (centres, subspace, cluster weights from ``world_seed``); samples differ by seed.

    Centres ~ N(0, I) in the subspace, points ~ centre + ``spread`` * N(0, I) there, then
    ``noise`` * N(0, I) in all ``dim`` dimensions (per coordinate, in units of a subspace coordinate).
    """
    rng = np.random.default_rng(world_seed)
    basis = np.linalg.qr(rng.standard_normal((dim, subspace)))[0].T.astype(np.float32)  # subspace x dim
    centres = rng.standard_normal((clusters, subspace)).astype(np.float32)
    weights = rng.dirichlet(np.ones(clusters))  # uneven sizes, like findings and sources

    def sample(n: int, seed: int) -> np.ndarray:
        r = np.random.default_rng(seed)
        z = centres[r.choice(clusters, n, p=weights)] + spread * r.standard_normal((n, subspace), dtype=np.float32)
        x = z @ basis
        x += noise * r.standard_normal((n, dim), dtype=np.float32)
        return l2_normalise(x)

    return sample


def blocks(sample: Sampler, n: int, seed: int) -> Iterator[np.ndarray]:
    """``n`` vectors in blocks; the same (n, seed) always gives the same vectors."""
    for b, s in enumerate(range(0, n, BLOCK)):
        yield sample(min(BLOCK, n - s), seed * 1_000_003 + b)


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def latency_ms(index, queries: np.ndarray, k: int) -> dict[str, float]:
    for q in queries[:5]:  # warm caches and faiss' lazily built tables
        search_raw(index, q, k)
    times = []
    for q in queries:
        t0 = time.perf_counter()
        search_raw(index, q, k)
        times.append((time.perf_counter() - t0) * 1000)
    t = np.asarray(times)
    return {"p50_ms": round(float(np.percentile(t, 50)), 2), "p95_ms": round(float(np.percentile(t, 95)), 2)}


def recall(truth: np.ndarray, found: np.ndarray) -> float:
    k = truth.shape[1]
    return round(float(np.mean([len(set(a) & set(b)) / k for a, b in zip(truth, found, strict=True)])), 4)


def build(kind: str, sample: Sampler, n: int, dim: int, args) -> tuple[object, dict]:
    """Build one index from the size-``n`` data; returns it and its build figures."""
    hnsw = HnswParams(args.m, args.ef_construction, max(args.ef_search))
    ivf = IvfParams(args.nlist, max(args.nprobe), args.quantizer)
    index = new_faiss_index(dim, kind, hnsw, ivf=ivf, n=n)
    gc.collect()
    mem0 = rss_mb()
    data, head, train_s, add_s = blocks(sample, n, seed=args.seed), [], 0.0, 0.0
    if not index.is_trained:  # IVF: k-means on a sample of the data, as cxrkit trains it
        while sum(map(len, head)) < ivf.train_per_list * index.nlist and (b := next(data, None)) is not None:
            head.append(b)
        t0 = time.perf_counter()
        train_index(index, np.concatenate(head), ivf)
        train_s = time.perf_counter() - t0
    for x in itertools.chain(head, data):
        t0 = time.perf_counter()
        index.add(x)
        add_s += time.perf_counter() - t0
    del x, head
    gc.collect()
    build_s = train_s + add_s
    row = {
        "params": describe(kind, index),
        "build_s": round(build_s, 2),
        "train_s": round(train_s, 2),
        "build_vectors_per_s": round(n / build_s),
        "memory_mb": round(rss_mb() - mem0),
    }
    return index, row


def describe(kind: str, index) -> dict:
    import faiss

    if kind == HNSW:
        return {"m": index.hnsw.nb_neighbors(1), "ef_construction": index.hnsw.efConstruction}
    if kind == IVF:
        return {"nlist": index.nlist, "quantizer": type(faiss.downcast_index(index.quantizer)).__name__}
    return {}


def sweep(kind: str, args) -> list[tuple[str, int]]:
    if kind == HNSW:
        return [("ef_search", ef) for ef in args.ef_search]
    if kind == IVF:
        return [("nprobe", p) for p in args.nprobe]
    return [("", 0)]


def set_search_param(index, name: str, value: int) -> None:
    if name == "ef_search":
        index.hnsw.efSearch = value
    elif name == "nprobe":
        index.nprobe = value


def run_size(n: int, sample: Sampler, queries: np.ndarray, args) -> list[dict]:
    dim, k, rows = queries.shape[1], args.k, []
    truth = None
    for kind in [EXACT, *[i for i in args.index if i != EXACT]]:
        index, built = build(kind, sample, n, dim, args)
        if kind == EXACT:
            truth = index.search(queries, k)[1]
        for name, value in sweep(kind, args):
            set_search_param(index, name, value)
            found = index.search(queries, k)[1]
            row = {"n": n, "index": kind, **built}
            if name:
                row["params"] = {**row["params"], name: value}
            row.update(latency_ms(index, queries, k), recall_at_k=recall(truth, found))
            if kind in args.index:
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)  # progress of a long run
        del index
        gc.collect()
    return rows


# -- calibration against real embeddings -----------------------------------------------------------
def hardness(x: np.ndarray, k: int, seed: int = 0) -> dict[str, float]:
    """Relative contrast and local intrinsic dimension at ``k`` (He et al. 2012; Amsaleg et al. 2015).

    Relative contrast: mean distance to a random other vector / mean distance to the k-th neighbour
    (near 1: all neighbours look alike, search is hard). LID: the maximum-likelihood estimate from the
    k nearest distances. Both over 500 held-out rows against the rest, leave-one-out.
    """
    rng = np.random.default_rng(seed)
    q = rng.choice(len(x), min(500, len(x) // 2), replace=False)
    sims = x[q] @ x.T
    sims[np.arange(len(q)), q] = -np.inf  # leave the query itself out
    d = np.sqrt(np.maximum(2 - 2 * np.sort(sims, axis=1)[:, ::-1][:, :k], 1e-12))
    cosines = x[q] @ x[rng.choice(len(x), 200)].T
    d_rand = np.sqrt(np.maximum(2 - 2 * cosines[cosines < 0.9999], 0)).mean()  # not the query itself
    lid = -1 / np.mean(np.log(d[:, :-1] / d[:, -1:]), axis=1)
    return {
        "relative_contrast": round(float(d_rand / d[:, -1].mean()), 3),
        "lid": round(float(np.median(lid)), 1),
        "nn1_cosine": round(float(1 - d[:, 0].mean() ** 2 / 2), 3),
        "mean_cosine": round(float(cosines.mean()), 3),
        "pca_dims_90pct": int(np.searchsorted(np.cumsum(pca_var(x)), 0.9) + 1),
    }


def pca_var(x: np.ndarray) -> np.ndarray:
    s = np.linalg.svd(x - x.mean(0), compute_uv=False) ** 2
    return s / s.sum()


def load_vectors(path: str) -> np.ndarray:
    """A .npy file of embeddings, or a cxrkit index folder (``cxr index build``)."""
    if Path(path).is_dir():
        from cxrkit.search import load_index

        return load_index(path).vectors
    return l2_normalise(np.load(path))


def recall_curves(x: np.ndarray, k: int, seed: int = 0) -> dict[str, list[float]]:
    """Recall@k of deliberately weak settings (300 held-out queries), where data sets tell apart."""
    rng = np.random.default_rng(seed)
    qi = rng.choice(len(x), 300, replace=False)
    q, db = x[qi], np.delete(x, qi, axis=0)
    exact = new_faiss_index(x.shape[1], EXACT)
    exact.add(db)
    truth = exact.search(q, k)[1]
    p = IvfParams(nlist=128)
    ivf = new_faiss_index(x.shape[1], IVF, ivf=p)
    train_index(ivf, db, p)
    ivf.add(db)
    hnsw = new_faiss_index(x.shape[1], HNSW, HnswParams(16, 40, k))
    hnsw.add(db)
    return {
        "ivf128_nprobe_1_4_8_16_32": [recall(truth, search_raw(ivf, q, k, nprobe=n)[1]) for n in (1, 4, 8, 16, 32)],
        "hnsw16_ef_36_64_128": [recall(truth, search_raw(hnsw, q, k, ef_search=e)[1]) for e in (36, 64, 128)],
    }


def calibrate(paths: list[str], sample: Sampler, args) -> dict:
    real = np.concatenate([load_vectors(p) for p in paths])
    sets = {
        "real": real,
        args.data: sample(len(real), args.seed),
        "random": random_sampler(real.shape[1])(len(real), args.seed),
    }
    return {"n": len(real), "k": args.k} | {
        name: hardness(x, args.k) | recall_curves(x, args.k) for name, x in sets.items()
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--dim", type=int, default=1280)
    ap.add_argument("--k", type=int, default=36)
    ap.add_argument("--queries", type=int, default=200, help="single queries timed per index setting")
    ap.add_argument("--index", nargs="+", choices=[EXACT, HNSW, IVF], default=[EXACT, HNSW, IVF])
    ap.add_argument("--data", choices=["clustered", "random"], default="clustered")
    ap.add_argument("--clusters", type=int, default=300)
    ap.add_argument("--subspace", type=int, default=256)
    ap.add_argument("--spread", type=float, default=1.0, help="within-cluster sd (centres have sd 1)")
    ap.add_argument("--noise", type=float, default=0.2, help="isotropic noise sd per dimension")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--m", type=int, default=HnswParams().m)
    ap.add_argument("--ef-construction", type=int, default=HnswParams().ef_construction)
    ap.add_argument("--ef-search", type=int, nargs="+", default=[HnswParams().ef_search])
    ap.add_argument("--nlist", type=int, default=IvfParams().nlist, help="0: cxrkit's choice for the size")
    ap.add_argument("--nprobe", type=int, nargs="+", default=[IvfParams().nprobe])
    ap.add_argument("--quantizer", choices=["flat", "hnsw"], default=IvfParams().quantizer)
    ap.add_argument("--threads", type=int, default=1, help="faiss OpenMP threads (0: faiss default)")
    ap.add_argument("--calibrate", nargs="+", metavar="NPY_OR_INDEX", help="compare data hardness with real embeddings")
    args = ap.parse_args()
    import faiss

    if args.threads:
        faiss.omp_set_num_threads(args.threads)
    sample = (
        random_sampler(args.dim)
        if args.data == "random"
        else clustered_sampler(args.dim, args.clusters, args.subspace, args.spread, args.noise)
    )
    if args.calibrate:
        print(json.dumps(calibrate(args.calibrate, sample, args), indent=2))
        return
    report = {
        "data": args.data,
        "dim": args.dim,
        "k": args.k,
        "queries": args.queries,
        "faiss": faiss.__version__,
        "threads": faiss.omp_get_max_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "results": [],
    }
    if args.data == "clustered":
        report["mixture"] = {a: getattr(args, a) for a in ("clusters", "subspace", "spread", "noise")}
    queries = sample(args.queries, seed=10**6 + 7)  # same distribution, never indexed
    for n in args.sizes:
        report["results"] += run_size(n, sample, queries, args)
    report["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
