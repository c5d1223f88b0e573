"""Collect training results into the Markdown tables of docs/RESULTS.md.

    .venv/bin/python benchmarks/results_table.py runs/pneumonia_knn runs/pneumonia_logreg ... shipped:pneumonia

Each argument is a run folder (its ``result.json``, written by ``cxr train``) or ``shipped:NAME`` (a shipped
bundle's recorded validation metrics, for a model whose run folder is not at hand). Binary runs get
accuracy/sensitivity/specificity at the stored threshold; multi-class and multi-label runs their headline AUROC.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.3f}"
    if isinstance(v, list) and len(v) == 2 and all(isinstance(x, float) for x in v):
        return f"[{v[0]:.3f}, {v[1]:.3f}]"
    return "" if v is None else str(v)


def load_row(arg: str) -> dict[str, Any] | None:
    if arg.startswith("shipped:"):
        from cxrkit.models import load_bundle, resolve_bundle

        bundle = load_bundle(resolve_bundle(arg.split(":", 1)[1]))
        val = bundle.metrics.get("validation", {})
        arch = bundle.architecture
        return {
            "name": f"{bundle.path.name} (shipped, {arch} {bundle.preprocessing.image_size} px)",
            "val": val,
            "n_val": val.get("n"),
            "thresholds": list(bundle.thresholds.values()),
            "train_seconds": bundle.extra.get("train_seconds"),
        }
    f = Path(arg) / "result.json"
    if not f.is_file():
        print(f"<!-- {arg}: no result.json (not trained yet) -->")
        return None
    row = json.loads(f.read_text())
    cfg = Path(arg) / "bundle" / "config.json"
    if cfg.is_file():
        c = json.loads(cfg.read_text())
        row["name"] = f"{row['name']} ({c['architecture']} {c['preprocessing']['image_size']} px)"
    return row


def main(args: list[str]) -> None:
    rows = [r for r in map(load_row, args) if r is not None]
    print("| model | n val | AUROC [95% CI] | accuracy | sensitivity | specificity | threshold | train s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        v = r.get("val", {})
        auroc = v.get("auroc", v.get("macro_auroc", v.get("mean_auroc", r.get("val_auroc"))))
        ci = v.get("auroc_ci", v.get("macro_auroc_ci", v.get("mean_auroc_ci")))
        print(
            f"| {r['name']} | {r.get('n_val')} | {fmt(auroc)} {fmt(ci)} | {fmt(v.get('accuracy'))} | "
            f"{fmt(v.get('sensitivity'))} | {fmt(v.get('specificity'))} | {fmt((r.get('thresholds') or [None])[0])} | "
            f"{fmt(r.get('train_seconds'))} |"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
