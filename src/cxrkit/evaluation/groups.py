"""Metrics per group of images (source, view, sex, age group): where a model holds up and where it does not."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from cxrkit.core.decisions import decide
from cxrkit.core.jsonable import nan_to_none, to_jsonable
from cxrkit.core.task import LabelSpace, TaskType
from cxrkit.evaluation.bootstrap import bootstrap_ci
from cxrkit.evaluation.metrics import auroc_batched

UNKNOWN_GROUP = "(unknown)"


def _output_row(y: np.ndarray, p: np.ndarray, decision: np.ndarray, n_boot: int, seed: int) -> dict[str, Any]:
    """n, positives, AUROC [CI] and sensitivity/specificity/accuracy of one output (NaN labels left out)."""
    known = ~np.isnan(y)
    y, p, decision = y[known].astype(np.float64), p[known], decision[known]
    n_pos = int(y.sum())
    both = 0 < n_pos < len(y)
    value = nan_to_none(auroc_batched(y[None, :], p[None, :])[0]) if both else None
    ci = bootstrap_ci("auroc", y, p, n_boot=n_boot, seed=seed) if both and n_boot else (None, None)
    pos, neg = y == 1, y == 0
    return {
        "n": len(y),
        "n_positive": n_pos,
        "auroc": value,
        "auroc_ci": None if ci[0] is None else list(ci),
        "sensitivity": float(decision[pos].mean()) if pos.any() else None,
        "specificity": float((~decision[neg]).mean()) if neg.any() else None,
        "accuracy": float((decision == pos).mean()) if len(y) else None,
    }


def _outputs(space: LabelSpace, y: np.ndarray, p: np.ndarray, thresholds: Sequence[float] | Mapping[str, float] | None):
    """(name, labels, probabilities, decisions) per scored output of the task."""
    if space.task is TaskType.BINARY:
        t = thresholds[0] if thresholds else 0.5
        prob = p.reshape(len(p), -1)[:, -1]
        yield space.classes[1], y[:, 1], prob, prob >= t
    elif space.task is TaskType.MULTICLASS:
        pred = decide(space, p, thresholds if isinstance(thresholds, Mapping) else None)
        for j, c in enumerate(space.classes):
            yield c, y[:, j], p[:, j], pred == j
    else:
        for j, c in enumerate(space.classes):
            t = thresholds[j] if thresholds else 0.5
            yield c, y[:, j], p[:, j], p[:, j] >= t


def metrics_by_group(
    space: LabelSpace,
    y: np.ndarray,
    probs: np.ndarray,
    groups: Sequence[Any],
    thresholds: Sequence[float] | Mapping[str, float] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """One row per group value (largest first; missing values grouped as '(unknown)').

    Binary rows: ``group``, ``output`` (the positive class), ``n``, ``n_positive``, ``auroc``, ``auroc_ci`` (None where a group has one class),
    ``sensitivity``, ``specificity``, ``accuracy`` at the stored threshold. Multiclass (decided by
    :func:`cxrkit.core.decisions.decide`; ``thresholds`` is ``{operating class: t}`` or None) and
    multilabel rows: ``group``, ``n``, ``mean_auroc`` (over outputs where defined) and ``per_class``
    {class: the binary fields}.
    """
    y = np.asarray(y, np.float32)
    p = np.asarray(probs, np.float32)
    names = np.array([UNKNOWN_GROUP if _missing(g) else str(g) for g in groups], dtype=object)
    values, counts = np.unique(names, return_counts=True)
    rows = []
    for value in values[np.argsort(-counts, kind="stable")]:
        mask = names == value
        per = {
            name: _output_row(yy, pp, dd, n_boot, seed)
            for name, yy, pp, dd in _outputs(space, y[mask], p[mask], thresholds)
        }
        if space.task is TaskType.BINARY:
            output, row = next(iter(per.items()))
            rows.append({"group": value, "output": output, **row})
            continue
        aurocs = [r["auroc"] for r in per.values() if r["auroc"] is not None]
        rows.append(
            {
                "group": value,
                "n": int(mask.sum()),
                "mean_auroc": float(np.mean(aurocs)) if aurocs else None,
                "per_class": per,
            }
        )
    return to_jsonable(rows)


def _missing(value: Any) -> bool:
    missing = pd.isna(value)
    return bool(missing) if np.ndim(missing) == 0 else False


GROUP_HEADER = ["group", "output", "n", "positives", "AUROC [95% CI]", "sensitivity", "specificity"]


def _cell(value: Any) -> str:
    return "-" if value is None else (f"{value:.3f}" if isinstance(value, float) else str(value))


def group_table(rows: Sequence[dict[str, Any]]) -> list[list[str]]:
    """``metrics_by_group`` rows as text cells under ``GROUP_HEADER`` (one line per group and output)."""
    lines = []
    for row in rows:
        outputs = row.get("per_class") or {row.get("output", ""): row}
        for name, r in outputs.items():
            ci = r.get("auroc_ci")
            auc = _cell(r.get("auroc")) + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
            lines.append(
                [
                    str(row["group"]),
                    name or "-",
                    _cell(r.get("n")),
                    _cell(r.get("n_positive")),
                    auc,
                    _cell(r.get("sensitivity")),
                    _cell(r.get("specificity")),
                ]
            )
    return lines
