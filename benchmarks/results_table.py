"""Collect runs/*/result.json into the Markdown tables of docs/RESULTS.md.

.venv/bin/python benchmarks/results_table.py runs/pneumonia* runs/covid* ...
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.3f}"
    if isinstance(v, list) and len(v) == 2 and all(isinstance(x, float) for x in v):
        return f"[{v[0]:.3f}, {v[1]:.3f}]"
    return "" if v is None else str(v)


def main(paths: list[str]) -> None:
    rows = []
    for p in paths:
        f = Path(p) / "result.json"
        if f.is_file():
            rows.append(json.loads(f.read_text()))
    print("| run | n val | AUROC [95% CI] | accuracy | sensitivity | specificity | threshold | train s |")
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
