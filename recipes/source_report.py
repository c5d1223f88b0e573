"""Per-source / per-origin figures of a bundle on a manifest (recipes/manifests.py): the RESULTS.md tables.

    python recipes/source_report.py --model runs/covid3_lso_rdb/bundle \
        --manifest runs/manifests/covid3_lso_covid19-radiography-db.csv --split val

For every output that matches a manifest label (NORMAL = No Finding, PNEUMONIA = Pneumonia), per group
(all rows, each `source`, each `origin`): n, positives, AUROC and sensitivity / specificity at the bundle's
decision (multi-class: arg-max; binary / multi-label: the stored threshold). Pneumonia is also scored on
"Pneumonia vs No Finding" rows only (the NIH target). Probabilities are cached beside --out.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from cxrkit.data import load_datasets
from cxrkit.models import load_bundle, resolve_bundle
from cxrkit.models.engine import Engine, InferenceOptions

ALIASES = {"NORMAL": "No Finding", "PNEUMONIA": "Pneumonia"}


def _label(frame: pd.DataFrame, cls: str) -> np.ndarray | None:
    for name in (cls, ALIASES.get(cls), {v: k for k, v in ALIASES.items()}.get(cls)):
        if name and f"label:{name}" in frame:
            return frame[f"label:{name}"].to_numpy(float)
    return None


def _figures(y: np.ndarray, score: np.ndarray, decided: np.ndarray) -> dict:
    ok = np.isfinite(y)
    y, score, decided = y[ok], score[ok], decided[ok]
    pos, neg = int((y == 1).sum()), int((y == 0).sum())
    out = {"n": int(ok.sum()), "pos": pos}
    if pos and neg:
        out["auroc"] = round(float(roc_auc_score(y, score)), 3)
    if pos:
        out["sens"] = round(float(decided[y == 1].mean()), 3)
    if neg:
        out["spec"] = round(float(1 - decided[y == 0].mean()), 3)
    return out


def report(bundle_ref: str, manifest: Path, split: str | None, cache: Path | None) -> dict:
    bundle = load_bundle(resolve_bundle(bundle_ref))
    frame = pd.read_csv(manifest)
    if split and "split" not in frame:  # the bundle's own (recorded, seeded) patient split of this manifest
        from cxrkit.training.data_prep import prepare_table
        from cxrkit.training.recipe import DataSpec

        t = prepare_table(DataSpec(**bundle.extra["recipe"]["data"]))
        wanted = set(t.frame.loc[t.frame["split"] == split, "path"])
        rows = np.flatnonzero(frame["path"].isin(wanted).to_numpy())
    else:
        rows = np.flatnonzero(frame["split"].to_numpy() == split) if split else np.arange(len(frame))
    frame = frame.iloc[rows].reset_index(drop=True)
    if cache is not None and cache.is_file():
        probs = np.load(cache)["probs"]
    else:
        table = load_datasets([str(manifest)]).subset(rows)
        probs = Engine(bundle, InferenceOptions(num_workers=1)).run_table(table, "proba")
        if cache is not None:
            np.savez(cache, probs=probs)
    classes = list(bundle.label_space.classes)
    exclusive = bundle.label_space.exclusive and len(classes) > 1 and probs.shape[1] == len(classes)
    out: dict = {"model": bundle_ref, "manifest": str(manifest), "split": split, "n": len(frame), "outputs": {}}
    groups = {"all": np.ones(len(frame), bool)}
    for col in ("source", "origin"):
        for g in sorted(frame[col].dropna().unique()):
            groups[f"{col}={g}"] = (frame[col] == g).to_numpy()
    for j, cls in enumerate(classes if probs.shape[1] == len(classes) else classes[1:]):
        y = _label(frame, cls)
        if y is None:
            continue
        score = probs[:, j]
        if exclusive:
            decided = probs.argmax(1) == j
        else:
            decided = score >= bundle.thresholds.get(cls, 0.5)
        per = {g: _figures(y[m], score[m], decided[m]) for g, m in groups.items()}
        if cls in ("Pneumonia", "PNEUMONIA"):
            nf = _label(frame, "No Finding")
            both = (y == 1) | ((nf == 1) & (y == 0)) if nf is not None else np.isfinite(y)
            per |= {
                f"vs_no_finding {g}": _figures(y[m & both], score[m & both], decided[m & both])
                for g, m in groups.items()
            }
        out["outputs"][cls] = {g: v for g, v in per.items() if v["n"]}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--manifest", required=True, type=Path)
    ap.add_argument(
        "--split",
        default=None,
        help="only rows of this split: the manifest's split column (leave-source-out manifests) or, without one, "
        "the bundle's recorded patient split of it",
    )
    ap.add_argument("--out", type=Path, default=None, help="write the JSON here (and cache probabilities beside it)")
    args = ap.parse_args(argv)
    cache = args.out.with_suffix(".probs.npz") if args.out else None
    result = report(args.model, args.manifest, args.split, cache)
    text = json.dumps(result, indent=1)
    if args.out:
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
