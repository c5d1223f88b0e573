"""A patient's timeline from the case store, with cxrkit.search's severity and drift rules."""

from __future__ import annotations

import datetime as _dt
import logging
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

from cxrkit.search.timeline import SEVERITY_RULE, drift_verdict, timeline_plot
from cxrkit.serving.errors import ApiError

log = logging.getLogger(__name__)
_PLOT_LOCK = threading.Lock()  # matplotlib's font cache and state are not meant for concurrent drawing


def _effective_date(rec: dict[str, Any]) -> tuple[str, str]:
    if rec.get("study_date"):
        return rec["study_date"], "recorded"
    return _dt.datetime.fromisoformat(rec["created_at"]).date().isoformat(), "analysis time"


def build_patient_timeline(patient_id: str, records: list[dict[str, Any]], model: str | None = None) -> dict[str, Any]:
    """Timeline of one patient from stored analyses (``CaseStore.patient_analyses``).

    One model's analyses are used (``model``, else the model of the latest analysis), since severities of
    different models are not comparable. The same image analysed again counts once (its latest analysis).
    Analyses are ordered by study date (the analysis date where none is known), then time; those sharing a
    study date form one study whose severity is their mean. The drift verdict is
    ``cxrkit.search.drift_verdict`` over the studies' severities.
    """
    if model is None:
        model = max(records, key=lambda r: r["created_at"])["model"]["name"]
    chosen = [r for r in records if r["model"]["name"] == model]
    latest: dict[str, dict[str, Any]] = {}
    for r in chosen:
        key = r["input_sha256"]
        if key not in latest or r["created_at"] > latest[key]["created_at"]:
            latest[key] = r
    entries = []
    for r in latest.values():
        date, source = _effective_date(r)
        out = r["outputs"]
        entries.append(
            {
                "analysis_id": r["analysis_id"],
                "created_at": r["created_at"],
                "study_date": date,
                "study_date_source": source,
                "kind": r["kind"],
                "severity": out.get("severity"),
                "findings": out.get("findings", []),
                "probabilities": out.get("probabilities", {}),
                "input_sha256": r["input_sha256"],
            }
        )
    entries.sort(key=lambda e: (e["study_date"], e["created_at"]))
    studies: list[dict[str, Any]] = []
    for e in entries:
        if not studies or studies[-1]["study_date"] != e["study_date"]:
            studies.append(
                {"study": len(studies) + 1, "study_date": e["study_date"], "order_value": e["study_date"], "_e": []}
            )
        studies[-1]["_e"].append(e)
    for st in studies:
        group = st.pop("_e")
        st["analysis_ids"] = [e["analysis_id"] for e in group]
        sev = [e["severity"] for e in group if e["severity"] is not None]
        st["severity"] = round(float(np.mean(sev)), 6) if sev else None
        classes = list(group[0]["probabilities"])
        st["probabilities"] = {
            c: round(float(np.mean([e["probabilities"].get(c, np.nan) for e in group])), 6) for c in classes
        }
    scored = [s["severity"] for s in studies if s["severity"] is not None]
    return {
        "patient_id": patient_id,
        "model": model,
        "ordered_by": "study_date",
        "n_analyses": len(entries),
        "n_studies": len(studies),
        "analyses": entries,
        "studies": studies,
        "severity_rule": SEVERITY_RULE,
        **drift_verdict(scored),
    }


def timeline_png(timeline: dict[str, Any]) -> bytes:
    """The timeline drawn by ``cxrkit.search.timeline_plot`` (severity against study date), as PNG bytes."""
    plot = {**timeline, "studies": [s for s in timeline["studies"] if s["severity"] is not None]}
    try:
        with tempfile.TemporaryDirectory(prefix="cxrkit-timeline-") as tmp, _PLOT_LOCK:
            out = timeline_plot(plot, Path(tmp) / "timeline.png")
            return out.read_bytes()
    except Exception as err:  # a traceback would carry the patient ID (in the title) into the log
        log.error("timeline plot failed (%s)", type(err).__name__)
        raise ApiError(500, "render_failed", "The timeline could not be drawn; its JSON is at .../timeline.") from None
