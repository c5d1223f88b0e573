"""How well an index's neighbours agree with the labels: leave-one-patient-out retrieval metrics.

Each labelled image queries the index with every image of its own patient left out (a patient's
other images are near-duplicates and would flatter any backbone). Reported:

- ``precision_at_k``: mean share of the k neighbours whose label agrees with the query's (exclusive
  tasks: the same class; multi-label: the same set of positive findings).
- kNN vote: each class's probability is the share of the k (labelled) neighbours carrying it; its
  accuracy and AUROC come from ``cxrkit.evaluation.evaluate_predictions`` (no bootstrap).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from cxrkit.core.errors import ConfigError, DataFormatError
from cxrkit.core.task import TaskType
from cxrkit.evaluation import evaluate_predictions
from cxrkit.search.index_files import CaseIndex, load_index

log = logging.getLogger(__name__)

_REPORTED = (
    "accuracy",
    "balanced_accuracy",
    "auroc",
    "macro_auroc",
    "mean_auroc",
    "micro_accuracy",
    "sensitivity",
    "specificity",
)


def _agreement(labels: np.ndarray, exclusive: bool, q: np.ndarray, nb: np.ndarray) -> np.ndarray:
    """1.0 where neighbour ``nb`` agrees with query ``q`` (NaN labels: unknown, never agreeing)."""
    lq, ln = labels[q], labels[nb]
    if exclusive:
        cq = np.where(np.nansum(lq, axis=-1) > 0, np.nanargmax(np.nan_to_num(lq, nan=-1), axis=-1), -1)
        cn = np.where(np.nansum(ln, axis=-1) > 0, np.nanargmax(np.nan_to_num(ln, nan=-1), axis=-1), -1)
        return ((cq == cn) & (cq >= 0)).astype(np.float64)
    return np.all(np.nan_to_num(lq, nan=-1) == np.nan_to_num(ln, nan=-1), axis=-1).astype(np.float64)


def _vote(labels: np.ndarray, ids: np.ndarray, exclusive: bool) -> np.ndarray:
    """Per query, per class: the share of its labelled neighbours with that class present."""
    nb = labels[np.clip(ids, 0, None)]  # Q x k x C
    valid = (ids >= 0)[..., None] & np.isfinite(nb)
    if exclusive:
        valid = valid & (np.nansum(nb, axis=-1, keepdims=True) > 0)
    counts = valid.sum(axis=1)
    votes = np.where(valid, nb, 0.0).sum(axis=1)
    c = labels.shape[1]
    prior = np.full(c, 1.0 / c)
    return np.where(counts > 0, votes / np.maximum(counts, 1), prior)


def evaluate_index(
    index: CaseIndex | str,
    k: int = 10,
    max_queries: int | None = None,
    seed: int = 0,
    batch: int = 2048,
) -> dict[str, Any]:
    """Leave-one-patient-out retrieval quality of an index (compare backbones with it).

    Args:
        index: a loaded index or its folder.
        k: neighbours per query.
        max_queries: evaluate a random sample of this many labelled images (None: all).
        seed: sampling seed.
        batch: queries per faiss call.

    Returns:
        JSON-friendly dict: ``k``, ``n_queries``, ``n_index``, ``index_type``, ``model``, ``classes``,
        ``precision_at_k``, ``knn`` (accuracy, AUROC... of the kNN vote) and ``protocol`` (in words).
    """
    if not isinstance(index, CaseIndex):
        index = load_index(index)
    k = int(k)
    if k < 1:
        raise ConfigError(f"k must be >= 1, got {k}.")
    space = index.label_space
    labels = index.labels
    exclusive = space.exclusive
    known = np.isfinite(labels).any(axis=1) & (np.nansum(labels, axis=1) > 0 if exclusive else True)
    queries = np.flatnonzero(known)
    if len(queries) == 0:
        raise DataFormatError(f"Index {index.path} has no labelled images to evaluate.")
    if max_queries is not None and len(queries) > max_queries:
        queries = np.sort(np.random.default_rng(seed).choice(queries, int(max_queries), replace=False))
    groups = index.groups()
    vectors = index.vectors()
    all_ids = np.full((len(queries), k), -1, np.int64)
    for s in range(0, len(queries), batch):
        q = queries[s : s + batch]
        _, ids = index.search(vectors[q], k, exclude_groups=list(groups[q]))
        all_ids[s : s + batch] = ids
    same_patient = int(sum((groups[all_ids[i][all_ids[i] >= 0]] == groups[q]).sum() for i, q in enumerate(queries)))
    if same_patient:  # pragma: no cover - guarded by search(); kept as a loud self-check
        raise RuntimeError(f"{same_patient} same-patient neighbours slipped through the leave-one-patient-out filter.")
    valid = all_ids >= 0
    agree = _agreement(labels, exclusive, np.repeat(queries[:, None], k, axis=1), np.clip(all_ids, 0, None))
    per_query = np.where(valid, agree, 0.0).sum(axis=1) / k
    probs = _vote(labels, all_ids, exclusive)
    y = labels[queries]
    if space.task is TaskType.BINARY:
        probs = probs[:, 1:2]
    elif space.task is TaskType.MULTICLASS:
        probs = probs / probs.sum(axis=1, keepdims=True)
    result = evaluate_predictions(space, y, probs, n_boot=0)
    knn = {key: result[key] for key in _REPORTED if key in result}
    return {
        "k": k,
        "n_queries": len(queries),
        "n_index": len(index),
        "n_patients": len(set(groups)),
        "index_type": index.index_type,
        "model": {key: index.info["model"].get(key) for key in ("name", "architecture", "fingerprint")},
        "classes": list(space.classes),
        "precision_at_k": float(per_query.mean()),
        "knn": knn,
        "mean_neighbours_found": float(valid.sum(axis=1).mean()),
        "protocol": (
            "leave-one-patient-out: each labelled image queries the index with all images of its own patient "
            "(source + patient_id; the image alone where unknown) excluded; precision@k = share of the k neighbours "
            "with the same label (multi-label: the same set of findings); kNN vote = share of labelled neighbours "
            "per class."
        ),
    }
