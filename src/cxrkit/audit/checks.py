"""The shortcut audit's checks as functions of arrays: probes, confounding, per-source metrics, verdicts.

Every check returns a dict with ``status`` ("ok", "warn", "fail" or "skipped"), a one-line ``verdict``
and the numbers behind it; ``MEANINGS`` says in words what each check's numbers mean.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from cxrkit.core.task import LabelSpace, TaskType
from cxrkit.data.demographics import age_group, parse_age, parse_sex
from cxrkit.evaluation import auroc

# The targets issue 11 sets for a model that looks at the lungs.
LUNGS_BLANKED_MAX = 0.65
OUTSIDE_DROP_MAX = 0.10
CAM_IN_LUNGS_MIN = 0.60
BORDER_DROP_MAX = 0.05
PROBE_HIGH = 0.80
CONFOUND_HIGH = 0.80

MEANINGS: dict[str, str] = {
    "source_probe": (
        "A logistic regression, cross-validated across patients, tries to predict each attribute (source, sex, "
        "age group, view) from the model's penultimate embedding. AUROC 0.5 means the embedding holds no trace of "
        "the attribute; near 1.0 means the model's features encode it, so the model *could* use it as a "
        "shortcut. That becomes a real risk when the attribute also predicts the label (see confounding)."
    ),
    "confounding": (
        "How well the image source alone (which hospital or collection an image came from) predicts each label "
        "in this data, cross-validated. 0.5: the source says nothing about the label; 1.0: every source holds "
        "one class, so a model can score perfectly by recognising the source, and no AUROC on this data can "
        "tell disease from source."
    ),
    "per_source": (
        "The model's AUROC within each source. Where a source holds a single class its AUROC is undefined; a "
        "pooled AUROC far above the within-source AUROCs is earned by telling sources apart."
    ),
    "occlusion": (
        "The model's AUROC on the same images with the lungs blanked, and with everything outside the lungs "
        f"blanked. A model that reads the lungs drops towards 0.5 without them (target <= {LUNGS_BLANKED_MAX}) "
        f"and keeps its AUROC with only them (target: within {OUTSIDE_DROP_MAX} of the full AUROC). Blanked "
        "images are unlike training images, so some loss is expected either way."
    ),
    "cam_in_lungs": (
        "The mean fraction of Grad-CAM energy (the heatmap's sum) that falls inside the lungs, for images of "
        "each class, explaining that class. A map spread evenly over the image would score the lung area "
        f"fraction (shown alongside); target >= {CAM_IN_LUNGS_MIN}."
    ),
    "border": (
        "The model's AUROC with a frame along the image's edges blanked (text markers, rulers, burnt-in labels "
        f"and collimation live there). A drop of more than {BORDER_DROP_MAX} means the border carries evidence "
        "the model relies on."
    ),
}


def _r(x: float | None) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), 4)


def label_matrix_auroc(label_space: LabelSpace, labels: np.ndarray, proba: np.ndarray) -> dict[str, Any]:
    """Headline AUROC (binary: the positive class; else the mean over classes with both values present)."""
    if label_space.task is TaskType.BINARY:
        value = auroc(labels[:, 1], proba[:, 0]) if np.isfinite(labels[:, 1]).any() else None
        return {"auroc": _r(value), "per_class": {label_space.positive: _r(value)}}
    per: dict[str, float | None] = {}
    for j, c in enumerate(label_space.classes):
        y = labels[:, j]
        ok = np.isfinite(y)
        per[c] = _r(auroc(y[ok], proba[ok, j])) if ok.any() and len(np.unique(y[ok])) == 2 else None
    values = [v for v in per.values() if v is not None]
    return {"auroc": _r(float(np.mean(values))) if values else None, "per_class": per}


def probe_attributes(frame: pd.DataFrame) -> dict[str, pd.Series]:
    """The attributes a probe can try to predict: source, sex, age group, view (each where the data has it)."""
    out: dict[str, pd.Series] = {"source": frame["source"].astype(object)}
    if "sex" in frame.columns:
        out["sex"] = parse_sex(frame["sex"]).astype(object)
    if "age_group" in frame.columns:
        out["age group"] = frame["age_group"].astype(object)
    elif "age" in frame.columns:
        out["age group"] = age_group(parse_age(frame["age"])).astype(object)
    out["view"] = frame["view"].astype(object)
    return {k: v.where(v.notna(), None) for k, v in out.items() if v.notna().any()}


def cv_probe(
    features: np.ndarray, target: Sequence[Any], groups: np.ndarray, n_splits: int = 5, seed: int = 0
) -> dict[str, Any]:
    """Cross-validated (patient-grouped) logistic-regression AUROC of ``features`` predicting ``target``.

    Rows with an unknown target, and classes with fewer rows than folds, are left out. Multi-class
    targets score the macro one-vs-rest AUROC.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y = pd.Series(list(target), dtype=object)
    known = y.notna().to_numpy() & ~y.astype(str).isin(["", "nan", "<NA>", "None"]).to_numpy()
    counts = y[known].value_counts()
    enough = counts[counts >= n_splits].index
    keep = known & y.isin(enough).to_numpy()
    classes = sorted(map(str, enough))
    if len(classes) < 2:
        return {
            "auroc": None,
            "n": int(keep.sum()),
            "classes": classes,
            "reason": "fewer than two values with enough images",
        }
    X, yk, g = features[keep], y[keep].astype(str).to_numpy(), groups[keep]
    folds = min(n_splits, int(pd.Series(g).nunique()))
    cv = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.1))
    p = cross_val_predict(clf, X, yk, groups=g, cv=cv, method="predict_proba")
    if len(classes) == 2:
        score = roc_auc_score(yk == classes[1], p[:, 1])
    else:
        score = roc_auc_score(yk, p, multi_class="ovr", average="macro", labels=classes)
    return {
        "auroc": _r(score),
        "n": int(keep.sum()),
        "classes": classes,
        "counts": counts[enough].astype(int).to_dict(),
    }


def source_probe(embeddings: np.ndarray, frame: pd.DataFrame, groups: np.ndarray) -> dict[str, Any]:
    """Check 1: how well each attribute can be read off the model's embeddings."""
    attrs = {name: cv_probe(embeddings, values, groups) for name, values in probe_attributes(frame).items()}
    scored = {k: v["auroc"] for k, v in attrs.items() if v["auroc"] is not None}
    if not scored:
        return {
            "status": "skipped",
            "verdict": "No attribute with two or more values: nothing to probe.",
            "attributes": attrs,
        }
    worst = max(scored, key=lambda k: scored[k])
    listed = ", ".join(f"{k} {v:.2f}" for k, v in scored.items())
    if scored[worst] >= PROBE_HIGH:
        status = "warn"
        verdict = f"The embedding encodes {worst} (AUROC {scored[worst]:.2f}; {listed}): a shortcut the model can use."
    else:
        status = "ok"
        verdict = f"No attribute is strongly encoded in the embedding ({listed})."
    return {"status": status, "verdict": verdict, "attributes": attrs}


def _outputs(label_space: LabelSpace) -> list[int]:
    return [1] if label_space.task is TaskType.BINARY else list(range(len(label_space.classes)))


def confounding(frame: pd.DataFrame, labels: np.ndarray, label_space: LabelSpace, groups: np.ndarray) -> dict[str, Any]:
    """Check 2: how well the source alone predicts each label (one-hot source -> logistic regression, CV)."""
    sources = frame["source"].astype(str)
    if sources.nunique() < 2:
        return {
            "status": "skipped",
            "verdict": f"One source only ({sources.iloc[0] if len(sources) else '-'}): confounding by source cannot be measured.",
            "per_class": {},
        }
    onehot = pd.get_dummies(sources).to_numpy(np.float32)
    per: dict[str, Any] = {}
    for j in _outputs(label_space):
        y = labels[:, j]
        ok = np.isfinite(y)
        target = pd.Series(np.where(ok, y, np.nan)).map({0.0: "absent", 1.0: "present"})
        per[label_space.classes[j]] = cv_probe(onehot, target, groups)["auroc"]
    scored = {k: v for k, v in per.items() if v is not None}
    if not scored:
        return {"status": "skipped", "verdict": "No label has both values in this data.", "per_class": per}
    worst = max(scored, key=lambda k: scored[k])
    if scored[worst] >= CONFOUND_HIGH:
        status, verdict = (
            "fail",
            (
                f"The source alone predicts {worst} with AUROC {scored[worst]:.2f}: source and label are confounded "
                "here, so a high AUROC on this data does not show the model sees disease."
            ),
        )
    else:
        status, verdict = "ok", f"The source predicts no label well (highest: {worst}, AUROC {scored[worst]:.2f})."
    return {"status": status, "verdict": verdict, "per_class": per}


def per_source(frame: pd.DataFrame, labels: np.ndarray, proba: np.ndarray, label_space: LabelSpace) -> dict[str, Any]:
    """Check 3: the model's AUROC within each source, and the pooled AUROC for comparison."""
    pooled = label_matrix_auroc(label_space, labels, proba)["auroc"]
    rows: dict[str, Any] = {}
    for src, idx in frame.groupby(frame["source"].astype(str)).indices.items():
        lab = labels[idx]
        counts = {c: int(np.nansum(lab[:, j] == 1)) for j, c in enumerate(label_space.classes)}
        rows[src] = {"n": len(idx), "class_counts": counts, **label_matrix_auroc(label_space, lab, proba[idx])}
    within = {s: r["auroc"] for s, r in rows.items() if r["auroc"] is not None}
    single = [s for s, r in rows.items() if r["auroc"] is None]
    n_single = sum(rows[s]["n"] for s in single)
    pooled_txt = "undefined" if pooled is None else f"{pooled:.2f}"
    listed = ", ".join(f"{s} {v:.2f}" for s, v in within.items())
    if not within:
        status, verdict = (
            "fail",
            (
                f"No source holds two classes, so the pooled AUROC ({pooled_txt}) can come from telling sources apart; "
                "nothing here measures disease within a source."
            ),
        )
    elif single:
        status, verdict = (
            "warn",
            (
                f"{n_single} of {len(frame)} images come from single-class sources ({', '.join(single)}), where disease "
                f"and source cannot be told apart; within the others: {listed} (pooled {pooled_txt})."
            ),
        )
    elif pooled is not None and pooled > max(within.values()) + 0.05:
        status, verdict = (
            "warn",
            (
                f"Pooled AUROC {pooled_txt} is above every within-source AUROC ({listed}): part of the pooled score "
                "comes from telling sources apart."
            ),
        )
    elif max(within.values()) - min(within.values()) > 0.10:
        status, verdict = (
            "warn",
            (
                f"AUROC differs by source ({listed}; pooled {pooled_txt}): what the model learned does not carry over "
                "to every source."
            ),
        )
    else:
        status, verdict = "ok", f"Within-source AUROCs ({listed}) are in line with the pooled {pooled_txt}."
    return {"status": status, "verdict": verdict, "pooled_auroc": pooled, "sources": rows}


def occlusion_verdict(full: float | None, lungs_blanked: float | None, outside_blanked: float | None) -> dict[str, Any]:
    """Check 4's status and verdict from the three AUROCs."""
    out = {"auroc_full": full, "auroc_lungs_blanked": lungs_blanked, "auroc_outside_blanked": outside_blanked}
    if full is None or lungs_blanked is None or outside_blanked is None:
        return {"status": "skipped", "verdict": "AUROC undefined on this data (one class only).", **out}
    problems = []
    if lungs_blanked > LUNGS_BLANKED_MAX:
        problems.append(
            f"it still separates the classes with the lungs blanked (AUROC {lungs_blanked:.2f}): it uses something outside the lungs"
        )
    if full - outside_blanked > OUTSIDE_DROP_MAX:
        problems.append(f"it loses {full - outside_blanked:.2f} AUROC when only the lungs are left")
    if problems:
        return {"status": "fail", "verdict": "Not lung-driven: " + "; ".join(problems) + ".", **out}
    return {
        "status": "ok",
        "verdict": f"Lung-driven: AUROC {full:.2f} full, {lungs_blanked:.2f} without the lungs, {outside_blanked:.2f} with the lungs only.",
        **out,
    }


def border_verdict(full: float | None, bordered: float | None, fraction: float) -> dict[str, Any]:
    """Check 6's status and verdict."""
    out = {"auroc_full": full, "auroc_border_blanked": bordered, "border_fraction": fraction}
    if full is None or bordered is None:
        return {"status": "skipped", "verdict": "AUROC undefined on this data (one class only).", **out}
    drop = full - bordered
    if drop > BORDER_DROP_MAX:
        return {
            "status": "fail",
            "verdict": f"The image border matters: AUROC falls {drop:.2f} ({full:.2f} -> {bordered:.2f}) with a {fraction:.0%} border blanked (markers, labels?).",
            **out,
        }
    return {
        "status": "ok",
        "verdict": f"The border does not matter (AUROC {full:.2f} -> {bordered:.2f} without it).",
        **out,
    }


def cam_verdict(per_class: Mapping[str, Any], n_images: int) -> dict[str, Any]:
    """Check 5's status and verdict from per-class mean CAM energy in the lungs."""
    values = [v["energy_in_lungs"] for v in per_class.values() if v.get("energy_in_lungs") is not None]
    if not values:
        return {
            "status": "skipped",
            "verdict": "No image to explain.",
            "per_class": dict(per_class),
            "n_images": n_images,
        }
    overall = _r(float(np.mean(values)))
    listed = ", ".join(
        f"{c} {v['energy_in_lungs']:.2f}" for c, v in per_class.items() if v.get("energy_in_lungs") is not None
    )
    ok = overall >= CAM_IN_LUNGS_MIN
    verdict = f"{'Looks' if ok else 'Does not look'} mainly at the lungs: {overall:.0%} of the Grad-CAM energy is inside them ({listed})."
    return {
        "status": "ok" if ok else "fail",
        "verdict": verdict,
        "energy_in_lungs": overall,
        "per_class": dict(per_class),
        "n_images": n_images,
    }
