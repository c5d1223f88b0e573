"""Model-card sections for in-source validation, leave-source-out validation and recorded external evaluations."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_HEADLINE = ("auroc", "macro_auroc", "mean_auroc")


def _num(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else ("-" if value is None else str(value))


def _headline(metrics: Mapping[str, Any]) -> str:
    for key in _HEADLINE:
        if metrics.get(key) is not None:
            ci = metrics.get(f"{key}_ci")
            text = f"{_num(metrics[key])}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci and None not in ci else "")
            return f"{text} ({key.replace('_', ' ')})"
    return "-"


def _seen(overlap: Any) -> str:
    if not isinstance(overlap, Mapping) or not overlap.get("checked"):
        return "not checked"
    return f"{overlap.get('count', 0)} ({overlap.get('fraction', 0.0):.1%})"


def _group_rows(rows: Any) -> list[str]:
    lines = ["| group | output | n | positives | AUROC [95% CI] | sensitivity | specificity |", "|---" * 7 + "|"]
    for row in rows if isinstance(rows, list) else []:
        outputs = row.get("per_class") or {row.get("output", "-"): row}
        for name, r in outputs.items():
            ci = r.get("auroc_ci")
            auc = _num(r.get("auroc")) + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
            cells = [row.get("group"), name, r.get("n"), r.get("n_positive"), auc, r.get("sensitivity")]
            lines.append("| " + " | ".join(_num(c) for c in [*cells, r.get("specificity")]) + " |")
    return lines


def evaluation_sections(config: Mapping[str, Any]) -> list[str]:
    """'Results side by side': every validation in ``metrics`` and every entry of ``evaluations``, one row each."""
    metrics = dict(config.get("metrics") or {})
    evaluations = dict(config.get("evaluations") or {})
    images = config.get("images") or {}
    parts: list[str] = []
    if images:
        parts += [
            f"Recorded split: {images.get('n_train')} training and {images.get('n_val')} validation images, by content "
            f"hash (`{images.get('file')}`); `cxr threshold` and `cxr evaluate` use it (seen-image check).\n"
        ]
    if not evaluations:
        return parts
    rows = [
        "| result | data | n | AUROC [95% CI] | sensitivity | specificity | seen in training |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, m in metrics.items():
        if isinstance(m, Mapping):
            rows.append(
                f"| {name} (recorded at training) | training sources | {_num(m.get('n'))} | {_headline(m)} | "
                f"{_num(m.get('sensitivity'))} | {_num(m.get('specificity'))} | - |"
            )
    for name, e in evaluations.items():
        m = e.get("metrics") or {}
        data = ", ".join(str(d) for d in e.get("data") or []) + (f" ({e['split']})" if e.get("split") else "")
        rows.append(
            f"| {name} | {data} `{e.get('data_fingerprint', '')}` | {_num(e.get('n'))} | {_headline(m)} | "
            f"{_num(m.get('sensitivity'))} | {_num(m.get('specificity'))} | {_seen(e.get('overlap_with_training'))} |"
        )
    parts += ["## Results side by side\n", "\n".join(rows) + "\n"]
    for name, e in evaluations.items():
        for column, group_rows in (e.get("by") or {}).items():
            parts += [f"### {name}: by {column}\n", "\n".join(_group_rows(group_rows)) + "\n"]
    return parts
