"""Write an evaluation as ``metrics.json``, ``report.md``, a self-contained ``report.html`` and PNG plots."""

from __future__ import annotations

import base64
import html
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cxrkit.core.errors import DataFormatError
from cxrkit.core.files import atomic_write_text
from cxrkit.core.jsonable import to_jsonable
from cxrkit.core.task import LabelSpace
from cxrkit.evaluation.groups import GROUP_HEADER, group_table
from cxrkit.evaluation.plots import learning_curve_plot, plot_all

logger = logging.getLogger(__name__)

_PLOT_TITLES = {
    "roc": "ROC curve",
    "pr": "Precision-recall curve",
    "confusion": "Confusion matrix",
    "reliability": "Reliability diagram",
    "accuracy_threshold": "Accuracy vs threshold",
    "learning_curve": "Learning curve",
}

_SUMMARY_KEYS = {
    "binary": (
        "n",
        "n_positive",
        "prevalence",
        "threshold",
        "threshold_source",
        "auroc",
        "auprc",
        "accuracy",
        "balanced_accuracy",
        "sensitivity",
        "specificity",
        "ppv",
        "npv",
        "f1",
        "ece",
    ),
    "multiclass": (
        "n",
        "accuracy",
        "balanced_accuracy",
        "macro_precision",
        "macro_recall",
        "macro_f1",
        "macro_auroc",
        "ece",
    ),
    "multilabel": ("n", "n_labels_scored", "mean_auroc", "micro_accuracy", "threshold_source", "ece"),
}
_CLASS_COLUMNS = {
    "multiclass": ("per_class", ("precision", "recall", "f1", "support", "auroc", "auroc_ci")),
    "multilabel": (
        "per_label",
        ("n", "n_positive", "auroc", "auroc_ci", "auprc", "threshold", "sensitivity", "specificity", "reason"),
    ),
}


def _fmt(value: Any) -> str:
    """Human-readable cell: floats to 3 decimals, intervals as [lo, hi], None as an em dash."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, float | int) for v in value):
        return f"[{value[0]:.3f}, {value[1]:.3f}]"
    return str(value)


def _with_ci(result: Mapping[str, Any], key: str) -> str:
    text = _fmt(result.get(key))
    ci = result.get(f"{key}_ci")
    return f"{text} {_fmt(ci)}" if ci else text


def _summary_rows(result: Mapping[str, Any]) -> list[tuple[str, str]]:
    keys = _SUMMARY_KEYS.get(str(result.get("task")), ())
    return [(k, _with_ci(result, k)) for k in keys if k in result] + operating_point_rows(result)


def operating_point_rows(result: Mapping[str, Any]) -> list[tuple[str, str]]:
    """A multiclass operating class's rule and its one-vs-rest sensitivity/specificity [CI] (none without one)."""
    op = result.get("operating_point")
    if not op:
        return []
    name = op["class"]
    return [
        ("decision", f"{name} at >= {op['threshold']:.4g}, else the most probable other class"),
        *((f"{name} {k}", _with_ci(op, k)) for k in ("sensitivity", "specificity", "ppv", "npv")),
    ]


def _class_table(result: Mapping[str, Any]) -> tuple[list[str], list[list[str]]] | None:
    spec = _CLASS_COLUMNS.get(str(result.get("task")))
    if not spec or spec[0] not in result:
        return None
    group, cols = spec
    header = ["class" if group == "per_class" else "finding", *cols]
    rows = [[str(name), *(_fmt(entry.get(c)) for c in cols)] for name, entry in result[group].items()]
    return header, rows


def _md_cell(text: str) -> str:
    # A pipe would end the cell and a newline the row; HTML-like text is left for the renderer to escape.
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(_md_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _overlap_warning(result: Mapping[str, Any]) -> str | None:
    overlap = result.get("overlap_with_training") or {}
    if not overlap.get("count"):
        return None
    return (
        f"{overlap['count']} of {result.get('n')} images ({overlap['fraction']:.1%}) are images the model was "
        "trained or validated on; these scores overstate how it does on new images."
    )


def render_markdown(result: Mapping[str, Any], title: str, plots: Mapping[str, str]) -> str:
    """Markdown report; ``plots`` maps plot name to a path relative to the report."""
    parts = [
        f"# {_md_cell(title)}",
        "",
        f"Task: **{_md_cell(str(result.get('task')))}**, "
        f"classes: {_md_cell(', '.join(map(str, result.get('classes', []))))}",
        "",
    ]
    boot = result.get("bootstrap") or {}
    if boot.get("n_boot"):
        level = round(100 * (1 - float(boot.get("alpha", 0.05))))
        parts += [
            f"Intervals are {level}% percentile bootstrap intervals over {boot['n_boot']} resamples "
            f"(seed {boot.get('seed')}).",
            "",
        ]
    parts += ["## Summary", "", _md_table(["metric", "value"], [list(r) for r in _summary_rows(result)]), ""]
    table = _class_table(result)
    if table:
        parts += ["## Per class" if result.get("task") == "multiclass" else "## Per finding", "", _md_table(*table), ""]
    warning = _overlap_warning(result)
    if warning:
        parts[4:4] = [f"**Warning: {_md_cell(warning)}**", ""]
    for column, rows in (result.get("by") or {}).items():
        parts += [f"## By {_md_cell(str(column))}", "", _md_table(GROUP_HEADER, group_table(rows)), ""]
    if plots:
        parts += ["## Plots", ""]
        for name, rel in plots.items():
            parts += [f"### {_PLOT_TITLES.get(name, name)}", "", f"![{_PLOT_TITLES.get(name, name)}]({rel})", ""]
    return "\n".join(parts)


def render_html(result: Mapping[str, Any], title: str, images: Mapping[str, bytes]) -> str:
    """Self-contained HTML report (PNG plots embedded as data URIs); every piece of text is escaped."""
    esc = html.escape
    body = [
        f"<h1>{esc(title)}</h1>",
        f"<p>Task: <b>{esc(str(result.get('task')))}</b>; classes: "
        f"{esc(', '.join(map(str, result.get('classes', []))))}</p>",
    ]
    boot = result.get("bootstrap") or {}
    if boot.get("n_boot"):
        level = round(100 * (1 - float(boot.get("alpha", 0.05))))
        body.append(
            f"<p>Intervals are {level}% percentile bootstrap intervals over {esc(str(boot['n_boot']))} "
            f"resamples (seed {esc(str(boot.get('seed')))}).</p>"
        )
    body += ["<h2>Summary</h2>", _html_table(["metric", "value"], [list(r) for r in _summary_rows(result)])]
    table = _class_table(result)
    if table:
        body += [
            "<h2>Per class</h2>" if result.get("task") == "multiclass" else "<h2>Per finding</h2>",
            _html_table(*table),
        ]
    warning = _overlap_warning(result)
    if warning:
        body.insert(2, f'<p style="color:#b00"><b>Warning: {esc(warning)}</b></p>')
    for column, rows in (result.get("by") or {}).items():
        body += [f"<h2>By {esc(str(column))}</h2>", _html_table(GROUP_HEADER, group_table(rows))]
    if images:
        body.append("<h2>Plots</h2>")
        for name, data in images.items():
            label = esc(_PLOT_TITLES.get(name, name))
            b64 = base64.b64encode(data).decode("ascii")
            body.append(
                f'<figure><img alt="{label}" src="data:image/png;base64,{b64}"><figcaption>{label}'
                "</figcaption></figure>"
            )
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;"
        "text-align:left}th{background:#f3f3f3}img{max-width:100%}figure{margin:1.5em 0}"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def write_report(
    result: Mapping[str, Any],
    out_dir: str | Path,
    y_true: Any,
    probs: Any,
    label_space: LabelSpace,
    title: str = "Evaluation report",
    metrics_csv: Any = None,
    plots: bool = True,
) -> dict[str, Path]:
    """Write ``metrics.json``, the plots, ``report.md`` and ``report.html`` into ``out_dir``, each file atomically.

    Args:
        result: the dict from :func:`cxrkit.evaluation.predictions.evaluate_predictions`.
        out_dir: directory to write into (created if needed).
        y_true: the label matrix the result was computed on (for the curves).
        probs: the probabilities the result was computed on.
        label_space: the task and its classes.
        title: report title (escaped in HTML).
        metrics_csv: optional training log (path or DataFrame) for a learning-curve plot.
        plots: False writes the numbers only (no PNGs; the reports then have no figures). Rendering takes
            ~0.2 s a figure, which adds up over sweeps and tests.

    Returns:
        {name: path} of everything written: ``metrics_json``, ``report_md``, ``report_html`` and one per plot.

    Raises:
        DataFormatError: ``result`` is not JSON-serialisable or does not match ``label_space``.
    """
    if result.get("task") != label_space.task.value:
        raise DataFormatError(
            f"result is for task {result.get('task')!r} but label_space is {label_space.task.value!r}; "
            "pass the label space the result was computed with."
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        text = json.dumps(to_jsonable(dict(result)), indent=2, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise DataFormatError(f"result cannot be written as JSON ({exc}); pass evaluate_predictions' output.") from exc
    written: dict[str, Path] = {}
    atomic_write_text(out_dir / "metrics.json", text + "\n")
    written["metrics_json"] = out_dir / "metrics.json"
    figures = plot_all(result, out_dir, y_true, probs, label_space) if plots else {}
    if plots and metrics_csv is not None:
        figures["learning_curve"] = learning_curve_plot(metrics_csv, out_dir / "learning_curve.png")
    written.update(figures)
    rel = {name: path.name for name, path in figures.items()}
    atomic_write_text(out_dir / "report.md", render_markdown(result, title, rel))
    written["report_md"] = out_dir / "report.md"
    images = {name: path.read_bytes() for name, path in figures.items()}
    atomic_write_text(out_dir / "report.html", render_html(result, title, images))
    written["report_html"] = out_dir / "report.html"
    logger.info("Wrote evaluation report to %s", out_dir)
    return written
