"""Similar-case search speed and HNSW recall on random unit vectors (prints JSON).

    .venv/bin/python benchmarks/index_search.py --sizes 10000 100000 1000000 --dim 1280

For each size: build throughput (vectors/s) of the exact (IndexFlatIP) and HNSW (IndexHNSWFlat,
inner product) indexes as cxrkit builds them, single-query top-k latency p50/p95 (ms), and HNSW
recall@k against exact search. 1280 is efficientnet_lite0's embedding dimension. Random vectors
are the hard case for HNSW (real embeddings cluster); the targets are top-36 over 100k under 5 ms
and recall >= 0.95.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

from cxrkit.search import HnswParams, l2_normalise, new_faiss_index
from cxrkit.search.vector import set_ef_search


def random_unit(n: int, dim: int, seed: int, block: int = 100_000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), np.float32)
    for s in range(0, n, block):
        out[s : s + block] = l2_normalise(rng.standard_normal((min(block, n - s), dim), dtype=np.float32))
    return out


def latency_ms(index, queries: np.ndarray, k: int) -> dict[str, float]:
    times = []
    for q in queries:
        t0 = time.perf_counter()
        index.search(q[None], k)
        times.append((time.perf_counter() - t0) * 1000)
    t = np.asarray(times)
    return {"p50_ms": round(float(np.percentile(t, 50)), 3), "p95_ms": round(float(np.percentile(t, 95)), 3)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--dim", type=int, default=1280)
    ap.add_argument("--k", type=int, default=36)
    ap.add_argument("--queries", type=int, default=200, help="single queries timed per index")
    ap.add_argument("--m", type=int, default=HnswParams().m)
    ap.add_argument("--ef-construction", type=int, default=HnswParams().ef_construction)
    ap.add_argument("--ef-search", type=int, nargs="+", default=[HnswParams().ef_search])
    ap.add_argument(
        "--threads", type=int, default=1, help="faiss OpenMP threads (1: best single-query latency; 0: faiss default)"
    )
    args = ap.parse_args()
    import faiss

    if args.threads:
        faiss.omp_set_num_threads(args.threads)
    queries = random_unit(args.queries, args.dim, seed=1)
    report = {
        "dim": args.dim,
        "k": args.k,
        "queries": args.queries,
        "faiss": faiss.__version__,
        "threads": faiss.omp_get_max_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "hnsw": {"m": args.m, "ef_construction": args.ef_construction},
        "results": [],
    }
    for n in args.sizes:
        x = random_unit(n, args.dim, seed=0)
        row: dict = {"n": n}
        exact = new_faiss_index(args.dim, "exact")
        t0 = time.perf_counter()
        exact.add(x)
        row["exact_build_vectors_per_s"] = round(n / (time.perf_counter() - t0), 1)
        row["exact"] = latency_ms(exact, queries, args.k)
        _, truth = exact.search(queries, args.k)
        hnsw = new_faiss_index(args.dim, "hnsw", HnswParams(args.m, args.ef_construction, args.ef_search[0]))
        t0 = time.perf_counter()
        hnsw.add(x)
        row["hnsw_build_s"] = round(time.perf_counter() - t0, 2)
        row["hnsw_build_vectors_per_s"] = round(n / row["hnsw_build_s"], 1)
        row["hnsw"] = []
        for ef in args.ef_search:
            set_ef_search(hnsw, max(ef, args.k))
            _, found = hnsw.search(queries, args.k)
            recall = np.mean([len(set(a) & set(b)) / args.k for a, b in zip(truth, found, strict=True)])
            row["hnsw"].append(
                {"ef_search": ef, "recall_at_k": round(float(recall), 4), **latency_ms(hnsw, queries, args.k)}
            )
        report["results"].append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)  # progress of a long run
        del exact, hnsw, x
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
