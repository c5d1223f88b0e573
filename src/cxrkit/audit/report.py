"""The shortcut audit's report: audit.json, plots, report.md and a self-contained report.html."""

from __future__ import annotations

import base64
import html
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cxrkit.audit import checks
from cxrkit.audit.run import AuditResult
from cxrkit.core.files import atomic_path, atomic_write_text
from cxrkit.core.jsonable import json_text

log = logging.getLogger(__name__)

TITLES = {
    "source_probe": "1. Source predictability (probe on the embeddings)",
    "confounding": "2. Confounding: the source alone predicting the label",
    "per_source": "3. Per-source metrics",
    "occlusion": "4. Occlusion: lungs blanked / everything else blanked",
    "cam_in_lungs": "5. Where it looks: Grad-CAM energy inside the lungs",
    "border": "6. Border test",
}
_MARK = {"ok": "OK", "warn": "WARNING", "fail": "FAIL", "skipped": "skipped"}
_PLOT_TITLES = {
    "auroc": "AUROC with parts of the image blanked",
    "probes": "What the embedding and the source give away",
    "cams": "Mean Grad-CAM per class (white line: mean lung mask)",
}


def _num(v: Any) -> str:
    return "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))


def _figure(ncols: int = 1, width: float = 5.0, height: float = 3.6) -> tuple[Figure, Any]:
    fig = Figure(figsize=(width * ncols, height))
    FigureCanvasAgg(fig)
    return fig, fig.subplots(1, ncols, squeeze=False)[0]


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return path


_BARS = {  # version -> (label, colour), in the order shown
    "full": ("full image", "#4c72b0"),
    "lungs_blanked": ("lungs\nblanked", "#c44e52"),
    "outside_blanked": ("lungs\nonly", "#55a868"),
    "border": ("border\nblanked", "#8172b2"),
}


def _auroc_plot(summary: Mapping[str, Any], path: Path) -> Path | None:
    values = summary["auroc"]
    items = [(label, values[k], colour) for k, (label, colour) in _BARS.items() if values.get(k) is not None]
    if not items:
        return None
    fig, (ax,) = _figure()
    bars = ax.bar([i[0] for i in items], [i[1] for i in items], color=[i[2] for i in items])
    ax.bar_label(bars, fmt="%.3f", fontsize=8)
    ax.axhline(0.5, color="grey", ls=":", label="chance (0.5)")
    ax.axhline(
        checks.LUNGS_BLANKED_MAX,
        color="#c44e52",
        ls="--",
        lw=1,
        label=f"lungs-blanked target ({checks.LUNGS_BLANKED_MAX})",
    )
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("AUROC")
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)


def _probe_plot(summary: Mapping[str, Any], path: Path) -> Path | None:
    probe = {
        k: v["auroc"]
        for k, v in summary["checks"]["source_probe"].get("attributes", {}).items()
        if v["auroc"] is not None
    }
    conf = {k: v for k, v in summary["checks"]["confounding"].get("per_class", {}).items() if v is not None}
    if not probe and not conf:
        return None
    fig, axes = _figure(2, width=4.5)
    for ax, data, title in ((axes[0], probe, "embedding -> attribute"), (axes[1], conf, "source -> label")):
        ax.barh(list(data), list(data.values()), color="#4c72b0")
        ax.axvline(0.5, color="grey", ls=":")
        ax.set_xlim(0, 1.02)
        ax.set_xlabel("cross-validated AUROC")
        ax.set_title(title, fontsize=10)
    return _save(fig, path)


def _cam_plot(result: AuditResult, path: Path) -> Path | None:
    classes = sorted(result.mean_cams)
    if not classes:
        return None
    fig, axes = _figure(len(classes), width=2.6, height=2.9)
    for ax, c in zip(axes, classes, strict=True):
        cam = result.mean_cams[c]
        ax.imshow(cam / max(float(cam.max()), 1e-8), cmap="jet", vmin=0, vmax=1)
        ax.contour(result.mean_masks[c], levels=[0.5], colors="white", linewidths=1.2)
        energy = result.summary["checks"]["cam_in_lungs"].get("per_class", {}).get(c, {}).get("energy_in_lungs")
        ax.set_title(f"{c}\nin lungs: {_num(energy)}", fontsize=9)
        ax.axis("off")
    return _save(fig, path)


def _check_rows(name: str, check: Mapping[str, Any]) -> tuple[list[str], list[list[str]]] | None:
    """The numbers behind one check as a small table."""
    if name == "source_probe":
        attrs = check.get("attributes", {})
        return ["attribute", "AUROC", "images", "values"], [
            [k, _num(v["auroc"]), str(v["n"]), ", ".join(v["classes"])] for k, v in attrs.items()
        ]
    if name == "confounding":
        return ["label", "AUROC of the source alone"], [[k, _num(v)] for k, v in check.get("per_class", {}).items()]
    if name == "per_source":
        rows = [
            [s, str(r["n"]), ", ".join(f"{c} {n}" for c, n in r["class_counts"].items() if n), _num(r["auroc"])]
            for s, r in check.get("sources", {}).items()
        ]
        return ["source", "images", "classes", "AUROC"], [*rows, ["(pooled)", "", "", _num(check.get("pooled_auroc"))]]
    if name == "cam_in_lungs":
        return ["class", "images", "CAM energy in lungs", "lung area (uniform map)"], [
            [c, str(v["n"]), _num(v["energy_in_lungs"]), _num(v["lung_area_fraction"])]
            for c, v in check.get("per_class", {}).items()
        ]
    keys = {
        "occlusion": ("auroc_full", "auroc_lungs_blanked", "auroc_outside_blanked"),
        "border": ("auroc_full", "auroc_border_blanked"),
    }
    if name in keys and check.get("status") != "skipped":
        return ["measure", "value"], [[k.replace("_", " "), _num(check.get(k))] for k in keys[name]]
    return None


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    def cell(t: str) -> str:
        return str(t).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(map(cell, header)) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(map(cell, r)) + " |" for r in rows])


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _intro(summary: Mapping[str, Any]) -> list[str]:
    d = summary["data"]
    sources = ", ".join(f"{k} ({v})" for k, v in d["sources"].items())
    met = summary["targets"].get("all")
    targets = {True: "meets", False: "does NOT meet", None: "could not be checked against"}[met]
    seen = d.get("seen_in_training") or {}
    if seen.get("checked") and seen.get("count"):
        overlap = (
            f"{seen['count']} of these images ({seen['fraction']:.0%}) were in the model's training or validation "
            "data: its AUROCs here are optimistic (--unseen-only leaves them out)."
        )
    elif seen.get("checked"):
        overlap = "None of these images was in the model's training or validation data."
    else:
        overlap = "Whether the model saw these images in training is unknown (the bundle records no image hashes)."
    return [
        f"Model `{summary['model']['path']}` ({summary['model']['architecture']}, {summary['task']}: "
        f"{', '.join(summary['classes'])}), {d['n_images']} images from {sources}.",
        overlap,
        f"Lung masks: {summary['lung_masks']['name']}. {summary['lung_masks']['note']}",
        f"The model {targets} the lung-focus targets (lungs-blanked AUROC <= {checks.LUNGS_BLANKED_MAX}, "
        f"lungs-only AUROC within {checks.OUTSIDE_DROP_MAX} of full, Grad-CAM energy in lungs >= {checks.CAM_IN_LUNGS_MIN}).",
    ]


def render_markdown(result: AuditResult, title: str, plots: Mapping[str, str]) -> str:
    s = result.summary
    parts = [f"# {title}", "", *(line + "\n" for line in _intro(s)), "## Verdicts", ""]
    parts += [f"- **{TITLES[k]}** [{_MARK[c['status']]}]: {c['verdict']}" for k, c in s["checks"].items()]
    parts.append("")
    for k, c in s["checks"].items():
        parts += [
            f"## {TITLES[k]}",
            "",
            f"**{_MARK[c['status']]}**: {c['verdict']}",
            "",
            f"_What it means:_ {c['meaning']}",
            "",
        ]
        table = _check_rows(k, c)
        if table and table[1]:
            parts += [_md_table(*table), ""]
    for name, rel in plots.items():
        parts += [f"### {_PLOT_TITLES[name]}", "", f"![{_PLOT_TITLES[name]}]({rel})", ""]
    return "\n".join(parts)


def render_html(result: AuditResult, title: str, images: Mapping[str, bytes]) -> str:
    esc = html.escape
    s = result.summary
    body = [f"<h1>{esc(title)}</h1>", *(f"<p>{esc(line)}</p>" for line in _intro(s)), "<h2>Verdicts</h2><ul>"]
    body += [
        f"<li><b>{esc(TITLES[k])}</b> [{_MARK[c['status']]}]: {esc(c['verdict'])}</li>" for k, c in s["checks"].items()
    ]
    body.append("</ul>")
    for k, c in s["checks"].items():
        body += [
            f"<h2>{esc(TITLES[k])}</h2>",
            f"<p><b>{_MARK[c['status']]}</b>: {esc(c['verdict'])}</p>",
            f"<p><i>What it means:</i> {esc(c['meaning'])}</p>",
        ]
        table = _check_rows(k, c)
        if table and table[1]:
            body.append(_html_table(*table))
    for name, data in images.items():
        b64 = base64.b64encode(data).decode("ascii")
        label = esc(_PLOT_TITLES[name])
        body.append(
            f'<figure><img alt="{label}" src="data:image/png;base64,{b64}"><figcaption>{label}</figcaption></figure>'
        )
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}"
        "th{background:#f3f3f3}img{max-width:100%}"
    )
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
        f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def write_audit_report(result: AuditResult, out_dir: str | Path, title: str = "Shortcut audit") -> dict[str, Path]:
    """Write ``audit.json``, the plots, ``report.md`` and ``report.html`` into ``out_dir`` (each atomically)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {"audit_json": out_dir / "audit.json"}
    atomic_write_text(written["audit_json"], json_text(result.summary, lenient=True))
    makers = {
        "auroc": lambda p: _auroc_plot(result.summary, p),
        "probes": lambda p: _probe_plot(result.summary, p),
        "cams": lambda p: _cam_plot(result, p),
    }
    plots = {name: path for name, make in makers.items() if (path := make(out_dir / f"{name}.png")) is not None}
    written.update(plots)
    atomic_write_text(out_dir / "report.md", render_markdown(result, title, {k: p.name for k, p in plots.items()}))
    images = {k: p.read_bytes() for k, p in plots.items()}
    atomic_write_text(out_dir / "report.html", render_html(result, title, images))
    written["report_md"], written["report_html"] = out_dir / "report.md", out_dir / "report.html"
    log.info("Wrote the shortcut audit to %s", out_dir)
    return written
