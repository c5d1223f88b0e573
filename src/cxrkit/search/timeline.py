"""Patient timelines: a patient's studies in order, a severity score per study, and a drift verdict.

Ordering: by ``study_date`` when every image of the patient has one, else by day ``offset``, else by
``follow_up`` number, else by file name (natural order). Images sharing the ordering value form one
study (their probabilities are averaged).

Severity (``SEVERITY_RULE``): the probability of disease, 1 - P(normal-like class). For a binary model
that is P(positive class); for a multi-class model 1 - P(the class named normal / no finding, else the
first class); for a multi-label model the largest probability among the findings (a "No Finding"
output is left out). With an index, ``neighbour_severity`` is the share of the k most similar indexed
images from OTHER patients whose label is not normal.

Drift (``DRIFT_RULE``): fit a least-squares line to severity against study number (0, 1, ...); the
change it predicts from the first to the last study (slope x (n - 1)) above +tolerance is
'worsening', below -tolerance 'improving', else 'stable' (tolerance 0.1 by default).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cxrkit.core.errors import ConfigError, DataFormatError
from cxrkit.core.task import NEGATIVE_NAMES, LabelSpace, TaskType
from cxrkit.data.table import CxrTable
from cxrkit.models.bundle import Bundle
from cxrkit.models.engine import Engine, InferenceOptions
from cxrkit.models.heads import class_probabilities
from cxrkit.search.embeddings import embed_table
from cxrkit.search.index import resolve_index_model
from cxrkit.search.index_files import CaseIndex, group_keys

log = logging.getLogger(__name__)

SEVERITY_RULE = (
    "severity = probability of disease = 1 - P(normal-like class) (binary: P(positive class); multi-label: "
    "the largest finding probability, 'No Finding' left out)"
)
DEFAULT_TOLERANCE = 0.1
DRIFT_RULE_TOLERANCE = DEFAULT_TOLERANCE
ORDER_KEYS = ("study_date", "offset", "follow_up", "file_name")


def drift_rule(tolerance: float = DEFAULT_TOLERANCE) -> str:
    return (
        "drift = slope of a least-squares line of severity against study number x (n_studies - 1) "
        f"(the fitted change from first to last study); > +{tolerance:g}: worsening, < -{tolerance:g}: improving, "
        "else stable"
    )


def _natural_key(name: str) -> list[Any]:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


# A file name that says the image came before the others ('...-prior.jpg', 'baseline'): placed first
# when it has no date or offset, instead of last by name.
_BEFORE_WORDS = re.compile(r"(?:^|[^a-z])(prior|previous|baseline|before|pre|initial|admission)(?:[^a-z]|$)")
KEY_NAMES = {"study_date": "study date", "offset": "day offset", "follow_up": "follow-up number"}
_WITHOUT = {"study_date": "a study date", "offset": "an offset", "follow_up": "a follow-up number"}


def _present_keys(frame: pd.DataFrame) -> dict[str, pd.Series]:
    present: dict[str, pd.Series] = {}
    if "study_date" in frame.columns:
        present["study_date"] = pd.to_datetime(frame["study_date"], errors="coerce")
    for col in ("offset", "follow_up"):
        if col in frame.columns:
            present[col] = pd.to_numeric(frame[col], errors="coerce")
    return {k: v for k, v in present.items() if v.notna().any()}


def _drop_coarse_date(present: dict[str, pd.Series], notes: list[str]) -> None:
    """A study date coarser than the day offsets (one date, or year-only 1 January dates) gives way to them."""
    if "study_date" not in present or "offset" not in present:
        return
    both = present["study_date"].notna() & present["offset"].notna()
    dates, offsets = present["study_date"][both], present["offset"][both]
    n_dates, n_offsets = dates.nunique(), offsets.nunique()
    year_only = bool(((dates.dt.month == 1) & (dates.dt.day == 1)).all())
    if n_offsets > 1 and (n_dates == 1 or year_only):
        del present["study_date"]
        notes.append(
            f"study_date left out: {n_dates} distinct date(s){' (all 1 January: year-only)' if year_only else ''} "
            f"for {n_offsets} distinct day offsets, so coarser than the offsets"
        )


def order_studies(frame: pd.DataFrame) -> tuple[np.ndarray, str, list[Any], list[str]]:
    """Order one patient's images in time, using dates and offsets wherever they are present.

    The main key is the first of study_date, offset, follow_up that every image has; when none is
    complete, the one most images have. Other complete keys break ties, then the file name. A study
    date coarser than the day offsets is left out (one date for all, or year-only 1 January dates such
    as the COVID collection's '2020'). Images WITHOUT the main key are never dropped: one whose file name
    says it came earlier ('prior', 'baseline', ...) goes first, any other last, by file name; a note says
    which and why.

    Returns:
        (row positions in time order, the main key used (one of ``ORDER_KEYS``), per ordered row the
        tuple of the ordering values (ISO date, day offset, follow-up number; for an image without the
        main key ``(None, file name)``; the file name when no key is present), notes on the choice).
    """
    n = len(frame)
    names = frame["path"].astype(str).map(lambda p: Path(p).name).tolist()
    if n == 0:
        return np.zeros(0, int), "file_name", [], []
    name_rank = np.empty(n, dtype=np.int64)
    name_rank[sorted(range(n), key=lambda i: _natural_key(names[i]))] = np.arange(n)
    notes: list[str] = []
    present = _present_keys(frame)
    _drop_coarse_date(present, notes)
    if not present:
        order = np.argsort(name_rank, kind="stable")
        return order, "file_name", [(names[i],) for i in order], notes
    main = max(present, key=lambda k: (int(present[k].notna().sum()), -ORDER_KEYS.index(k)))
    ties = [k for k in present if k != main and present[k].notna().all()]
    keys = [main, *ties]
    has = present[main].notna().to_numpy()
    before = np.array([bool(_BEFORE_WORDS.search(Path(nm).stem.lower())) for nm in names]) & ~has
    # lexsort: last key is primary. Group: 0 = 'before' without key, 1 = with key, 2 = other without key.
    group = np.where(has, 1, np.where(before, 0, 2))
    columns = [present[k].to_numpy() for k in keys]
    # Rows without the main key are placed by ``group``; a filler keeps lexsort away from NaN/NaT.
    filler = pd.Timestamp(0) if main == "study_date" else 0.0
    main_col = present[main].fillna(filler).to_numpy()
    order = np.lexsort((name_rank, *reversed(columns[1:]), main_col, group))

    def shown(key: str, v: Any) -> Any:
        if key == "study_date":
            return pd.Timestamp(v).date().isoformat()
        return float(v) if key == "offset" else int(v)

    values = [tuple(shown(k, present[k].iat[i]) for k in keys) if has[i] else (None, names[i]) for i in order]
    if len(keys) > 1:
        notes.append(f"ordered by {keys[0]}, ties broken by {', '.join(keys[1:])}, then file name")
    missing = int((~has).sum())
    if missing:
        n_before = int(before.sum())
        parts = []
        if n_before:
            found = (_BEFORE_WORDS.search(Path(nm).stem.lower()) for nm in np.asarray(names)[before])
            words = sorted({m.group(1) for m in found if m})
            parts.append(f"{n_before} placed first (the file name says {', '.join(repr(w) for w in words)})")
        if missing - n_before:
            parts.append(f"{missing - n_before} placed last, in file-name order")
        notes.append(f"{missing} image(s) without {_WITHOUT[main]}: " + "; ".join(parts))
    return order, main, values, notes


def _missing_basis(key: str, name: str) -> str:
    short = _WITHOUT[key].split(" ", 1)[1]
    m = _BEFORE_WORDS.search(Path(name).stem.lower())
    return f"file name says {m.group(1)!r} (no {short})" if m else f"file name (no {short})"


def order_rule(key: str, notes: list[str]) -> str:
    """One sentence saying how a timeline was ordered (shown by the CLI, kept in the JSON)."""
    if key == "file_name":
        return "ordered by file name (natural order): no image has a study date, day offset or follow-up number"
    rule = f"ordered by {KEY_NAMES[key]} where present"
    return rule + (f" ({'; '.join(notes)})" if notes else "")


def _normal_column(space: LabelSpace) -> int | None:
    for i, c in enumerate(space.classes):
        if c.lower() in NEGATIVE_NAMES:
            return i
    return None


def severity_from_probs(space: LabelSpace, probs: np.ndarray) -> np.ndarray:
    """Severity per row (see ``SEVERITY_RULE``) from model probabilities (binary: N x 1)."""
    p = np.asarray(probs, dtype=np.float64)
    if space.task is TaskType.BINARY:
        return p.reshape(len(p), -1)[:, -1]
    normal = _normal_column(space)
    if space.task is TaskType.MULTICLASS:
        return 1.0 - p[:, 0 if normal is None else normal]
    cols = [i for i in range(p.shape[1]) if i != normal]
    return p[:, cols].max(axis=1) if cols else np.zeros(len(p))


def abnormal_labels(space: LabelSpace, labels: np.ndarray) -> np.ndarray:
    """1.0 where a label row is 'severe' (a non-normal class present), 0.0 where normal, NaN where unknown."""
    lab = np.asarray(labels, dtype=np.float64)
    normal = _normal_column(space)
    if space.task is TaskType.BINARY and normal is None:
        normal = 0
    cols = [i for i in range(lab.shape[1]) if i != normal]
    sick = np.nan_to_num(lab[:, cols], nan=0.0).max(axis=1) if cols else np.zeros(len(lab))
    known = np.isfinite(lab).any(axis=1) & ((np.nansum(lab, axis=1) > 0) | (not space.exclusive))
    return np.where(known, sick, np.nan)


def drift_verdict(severities: np.ndarray | list[float], tolerance: float = DEFAULT_TOLERANCE) -> dict[str, Any]:
    """The drift of a severity series (see ``drift_rule``).

    Returns:
        ``{"drift": float | None, "slope_per_study": float | None, "verdict": str, "rule": str}``;
        fewer than 2 studies give verdict 'single study' and drift None.
    """
    s = np.asarray(severities, dtype=np.float64)
    rule = drift_rule(tolerance)
    if len(s) < 2:
        return {"drift": None, "slope_per_study": None, "verdict": "single study", "rule": rule}
    x = np.arange(len(s), dtype=np.float64)
    slope = float(np.polyfit(x, s, 1)[0])
    drift = slope * (len(s) - 1)
    verdict = "worsening" if drift > tolerance else "improving" if drift < -tolerance else "stable"
    return {"drift": round(drift, 6), "slope_per_study": round(slope, 6), "verdict": verdict, "rule": rule}


def _patient_rows(table: CxrTable, patient: str) -> np.ndarray:
    pid = table.frame["patient_id"].astype("object")
    rows = np.flatnonzero((pid.astype(str) == str(patient)).to_numpy() & pid.notna().to_numpy())
    if len(rows) == 0:
        known = pid.dropna().astype(str).value_counts()
        examples = ", ".join(f"{p} ({n})" for p, n in known.head(8).items())
        raise DataFormatError(
            f"No images of patient {patient!r} in the data. Patients with the most images: "
            f"{examples or 'none (the data has no patient IDs)'}."
        )
    return rows


def build_timeline(
    table: CxrTable,
    rows: np.ndarray,
    probs: np.ndarray,
    space: LabelSpace,
    neighbour_severity: np.ndarray | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> dict[str, Any]:
    """Timeline of one patient from precomputed probabilities (``probs`` row-aligned with ``rows``)."""
    sub = table.frame.iloc[rows].reset_index(drop=True)
    order, key, values, notes = order_studies(sub)
    full = class_probabilities(np.asarray(probs, dtype=np.float64), space)
    sev = severity_from_probs(space, probs)
    studies: list[dict[str, Any]] = []
    for pos, value in zip(order, values, strict=True):
        # Images without the key are a study each: nothing says they were taken together.
        same = key != "file_name" and value[0] is not None and studies and studies[-1]["_key"] == value
        if not same:
            basis = key if value[0] is not None or key == "file_name" else _missing_basis(key, value[1])
            studies.append({"order_value": value[0], "order_basis": basis, "_key": value, "_rows": []})
        studies[-1]["_rows"].append(int(pos))
    for i, st in enumerate(studies):
        r = st.pop("_rows")
        st.pop("_key")
        st["study"] = i + 1
        st["images"] = [str(sub["path"].iat[j]) for j in r]
        for col in ("study_date", "offset"):
            v = sub[col].iat[r[0]]
            st[col] = None if pd.isna(v) else (v.item() if hasattr(v, "item") else v)
        st["probabilities"] = {c: round(float(full[r, j].mean()), 6) for j, c in enumerate(space.classes)}
        st["severity"] = round(float(sev[r].mean()), 6)
        if neighbour_severity is not None:
            ns = neighbour_severity[r]
            st["neighbour_severity"] = None if np.isnan(ns).all() else round(float(np.nanmean(ns)), 6)
    drift = drift_verdict([s["severity"] for s in studies], tolerance)
    pid = sub["patient_id"].iat[0]
    return {
        "patient_id": None if pd.isna(pid) else str(pid),
        "source": None if pd.isna(sub["source"].iat[0]) else str(sub["source"].iat[0]),
        "ordered_by": key,
        "order_rule": order_rule(key, notes),
        "ordering_notes": notes,
        "n_images": len(rows),
        "n_studies": len(studies),
        "studies": studies,
        "severity_rule": SEVERITY_RULE,
        **drift,
    }


def _neighbour_severity(
    index: CaseIndex, bundle: Bundle, table: CxrTable, k: int, inference: InferenceOptions | None
) -> np.ndarray:
    """Per image: share of 'severe' labels among its k nearest indexed images of OTHER patients."""
    resolve_index_model(index, bundle)
    vectors = embed_table(bundle, table, inference)
    groups = list(group_keys(table.frame))
    _, ids = index.search(vectors, k, exclude_groups=groups)
    severe = abnormal_labels(index.label_space, index.labels)
    nb = np.where(ids >= 0, severe[np.clip(ids, 0, None)], np.nan)
    with np.errstate(invalid="ignore"):
        out = np.nanmean(nb, axis=1) if nb.size else np.full(len(table), np.nan)
    return np.where(np.isfinite(nb).any(axis=1), out, np.nan)


def patient_timeline(
    bundle: Bundle,
    table: CxrTable,
    patient: str,
    index: CaseIndex | None = None,
    k: int = 36,
    tolerance: float = DEFAULT_TOLERANCE,
    inference: InferenceOptions | None = None,
) -> dict[str, Any]:
    """One patient's timeline: studies in order with probabilities, severity and the drift verdict.

    Args:
        bundle: the classifier.
        table: the data holding the patient's images.
        patient: the patient ID (as in the table's ``patient_id``).
        index: optional ``CaseIndex`` of the same model: adds ``neighbour_severity`` per study.
        k: neighbours for ``neighbour_severity``.
        tolerance: drift tolerance.
        inference: how the model runs (backend, precision, batch size: as ``cxr predict``); the
            neighbours' embeddings are fp32 whatever the precision, as the index's are.
    """
    rows = _patient_rows(table, patient)
    sub = table.subset(rows)
    probs = Engine(bundle, inference).run_table(sub, "proba")
    ns = _neighbour_severity(index, bundle, sub, k, inference) if index is not None else None
    out = build_timeline(table, rows, probs, bundle.label_space, ns, tolerance)
    out["model"] = {"name": bundle.path.name, "architecture": bundle.architecture, "fingerprint": bundle.fingerprint}
    return out


def rank_patients(
    bundle: Bundle,
    table: CxrTable,
    index: CaseIndex | None = None,
    k: int = 36,
    tolerance: float = DEFAULT_TOLERANCE,
    inference: InferenceOptions | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Every patient with >= 2 studies, most worsening first (a reading list).

    Returns:
        ``{"patients": [{patient_id, source, n_studies, ordered_by, first_severity, last_severity, drift,
        verdict}], "rule", "severity_rule", "n_patients"}``; ties in drift are broken by the last severity.
    """
    pid = table.frame["patient_id"].astype("object")
    src = table.frame["source"].astype("object").fillna("")
    keyed = pd.DataFrame({"pid": pid, "src": src}).dropna(subset=["pid"])
    groups = keyed.groupby(["src", "pid"], sort=True).indices
    candidates = {g: np.asarray(keyed.index[idx]) for g, idx in groups.items() if len(idx) >= 2}
    if not candidates:
        raise DataFormatError("No patient has 2 or more images in this data: there is no timeline to rank.")
    rows_all = np.concatenate(list(candidates.values()))
    sub = table.subset(rows_all)
    probs = Engine(bundle, inference).run_table(sub, "proba", progress=progress)
    ns_all = _neighbour_severity(index, bundle, sub, k, inference) if index is not None else None
    patients = []
    start = 0
    for rows in candidates.values():
        sl = slice(start, start + len(rows))
        start += len(rows)
        tl = build_timeline(
            table, rows, probs[sl], bundle.label_space, None if ns_all is None else ns_all[sl], tolerance
        )
        if tl["n_studies"] < 2:
            continue
        entry = {
            "patient_id": tl["patient_id"],
            "source": tl["source"],
            "n_studies": tl["n_studies"],
            "ordered_by": tl["ordered_by"],
            "first_severity": tl["studies"][0]["severity"],
            "last_severity": tl["studies"][-1]["severity"],
            "drift": tl["drift"],
            "verdict": tl["verdict"],
        }
        if ns_all is not None:
            entry["last_neighbour_severity"] = tl["studies"][-1].get("neighbour_severity")
        patients.append(entry)
    patients.sort(key=lambda e: (-e["drift"], -e["last_severity"]))
    return {
        "n_patients": len(patients),
        "patients": patients,
        "rule": drift_rule(tolerance),
        "severity_rule": SEVERITY_RULE,
        "model": {"name": bundle.path.name, "architecture": bundle.architecture, "fingerprint": bundle.fingerprint},
    }


def timeline_plot(timeline: dict[str, Any], out_png: str | Path) -> Path:
    """Severity against date / offset / study number, each point labelled; the drift verdict in the title."""
    from cxrkit.core.files import atomic_path

    fig = timeline_figure(timeline)
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return out_png


def timeline_figure(timeline: dict[str, Any]) -> Any:
    """The matplotlib ``Figure`` behind ``timeline_plot`` (laid out, not saved)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    studies = timeline["studies"]
    if not studies:
        raise ConfigError("The timeline has no studies to plot.")
    key = timeline["ordered_by"]
    if any(s["order_value"] is None for s in studies):  # some studies lack the key: plot by study number
        x = [s["study"] for s in studies]
        xlabel = f"study (ordered by {KEY_NAMES.get(key, key)} where present; see the notes)"
    elif key == "study_date":
        x = [pd.Timestamp(s["order_value"]).to_pydatetime() for s in studies]
        xlabel = "study date"
    elif key in ("offset", "follow_up"):
        x = [float(s["order_value"]) for s in studies]
        xlabel = "day offset" if key == "offset" else "follow-up number"
    else:
        x = [s["study"] for s in studies]
        xlabel = "study (ordered by file name)"
    y = [s["severity"] for s in studies]
    fig = Figure(figsize=(7.5, 4.2))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.plot(x, y, "-o", color="#c0392b", label="severity (model)")
    for n, (xi, yi, s) in enumerate(zip(x, y, studies, strict=True)):
        top = max(s["probabilities"], key=s["probabilities"].get)
        # Alternate above / below so that labels of close studies do not overlap.
        dy = 9 if n % 2 == 0 else -22
        ax.annotate(
            f"#{s['study']} {yi:.2f}\n{top}",
            (xi, yi),
            textcoords="offset points",
            xytext=(0, dy),
            ha="center",
            fontsize=7,
            parse_math=False,
        )
    ns = [s.get("neighbour_severity") for s in studies]
    if any(v is not None for v in ns):
        ax.plot(
            x,
            [np.nan if v is None else v for v in ns],
            "--s",
            color="#2c7fb8",
            alpha=0.7,
            label="severe share among similar cases",
        )
        ax.legend(loc="lower right", fontsize=7)
    ax.set_ylim(-0.05, 1.15)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("severity (P disease)")
    drift = timeline.get("drift")
    dtxt = "" if drift is None else f", drift {drift:+.2f}"
    # Patient IDs and class names are drawn literally: '$...$' must never reach mathtext (or TeX).
    ax.set_title(
        f"patient {timeline.get('patient_id')}: {timeline.get('verdict')}{dtxt}",
        fontsize=10,
        parse_math=False,
        usetex=False,
    )
    ax.grid(alpha=0.3)
    if isinstance(x[0], int):  # study numbers: whole ticks only
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    elif key == "study_date":
        _date_axis(ax, x)
    fig.tight_layout()
    return fig


def _date_axis(ax: Any, dates: list[Any]) -> None:
    """Whole-day ticks, at most 7, with concise labels that do not overlap (nor show hours of a date)."""
    import datetime as dt

    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    lo, hi = min(dates), max(dates)
    pad = max(dt.timedelta(days=1), (hi - lo) * 0.06)
    if hi - lo < dt.timedelta(days=6):  # a few days apart: widen to a week, so ticks fall on days
        pad = max(pad, (dt.timedelta(days=7) - (hi - lo)) / 2)
    ax.set_xlim(lo - pad, hi + pad)
    locator = AutoDateLocator(minticks=3, maxticks=7)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator, show_offset=True))
