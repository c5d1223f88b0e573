"""Exact vs HNSW search on random unit vectors, and the index-type choice."""

from __future__ import annotations

import numpy as np

from cxrkit.search import EXACT_MAX, HnswParams, choose_index_type, l2_normalise, new_faiss_index


def test_choose_index_type():
    assert choose_index_type(1000) == "exact"
    assert choose_index_type(EXACT_MAX + 1) == "hnsw"
    assert choose_index_type(10, approx=True) == "hnsw"
    assert choose_index_type(EXACT_MAX * 10, approx=False) == "exact"


def test_hnsw_recall_vs_exact():
    rng = np.random.default_rng(0)
    x = l2_normalise(rng.standard_normal((3000, 32)))
    q = l2_normalise(rng.standard_normal((100, 32)))
    exact = new_faiss_index(32, "exact")
    exact.add(x)
    hnsw = new_faiss_index(32, "hnsw", HnswParams())
    hnsw.add(x)
    k = 20
    se, ie = exact.search(q, k)
    _, ih = hnsw.search(q, k)
    recall = np.mean([len(set(a) & set(b)) / k for a, b in zip(ie, ih, strict=True)])
    assert recall >= 0.95
    # Exact inner products of unit vectors are cosine similarities.
    np.testing.assert_allclose(se[:, 0], (q @ x[ie[:, 0]].T).diagonal(), atol=1e-5)
    assert (np.diff(se, axis=1) <= 1e-6).all()
