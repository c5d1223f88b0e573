"""Similar cases and patient timelines: embeddings, a FAISS vector index, kNN evaluation, drift.

Public API::

    build_index(model, data, out)          embed + write an index folder (resumable, atomic)
    build_index(..., devices=N)            the same, embedded by N Lightning ranks (cxrkit.search.sharded)
    add_to_index(index_dir, data)          append images without re-embedding the old ones
    load_index(path) -> CaseIndex          checks completeness; .search(vectors, k, exclude_groups)
    query_index(index, images, model, k)   the k most similar indexed images per query image
    check_model(index, bundle)             refuses another model's embeddings (ModelMismatchError)
    evaluate_index(index, k)               leave-one-patient-out precision@k and kNN vote metrics
    patient_timeline / rank_patients       ordered studies, severity, drift verdict; reading list
"""

from cxrkit.search.embeddings import embed_paths, embed_table, l2_normalise
from cxrkit.search.errors import IndexFormatError, ModelMismatchError
from cxrkit.search.grid import similar_cases_grid
from cxrkit.search.index import (
    add_to_index,
    build_index,
    check_model,
    describe_index,
    query_index,
    resolve_index_model,
)
from cxrkit.search.index_files import CaseIndex, load_index, work_dir_for
from cxrkit.search.quality import evaluate_index
from cxrkit.search.timeline import (
    DRIFT_RULE_TOLERANCE,
    SEVERITY_RULE,
    build_timeline,
    drift_rule,
    drift_verdict,
    order_studies,
    patient_timeline,
    rank_patients,
    severity_from_probs,
    timeline_plot,
)
from cxrkit.search.vector import EXACT_MAX, HnswParams, choose_index_type, new_faiss_index

__all__ = [
    "DRIFT_RULE_TOLERANCE",
    "EXACT_MAX",
    "SEVERITY_RULE",
    "CaseIndex",
    "HnswParams",
    "IndexFormatError",
    "ModelMismatchError",
    "add_to_index",
    "build_index",
    "build_timeline",
    "check_model",
    "choose_index_type",
    "describe_index",
    "drift_rule",
    "drift_verdict",
    "embed_paths",
    "embed_table",
    "evaluate_index",
    "l2_normalise",
    "load_index",
    "new_faiss_index",
    "order_studies",
    "patient_timeline",
    "query_index",
    "rank_patients",
    "resolve_index_model",
    "severity_from_probs",
    "similar_cases_grid",
    "timeline_plot",
    "work_dir_for",
]
