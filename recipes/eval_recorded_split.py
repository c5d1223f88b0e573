"""Evaluate a bundle on the validation images it recorded, per source: the in-source column of docs/RESULTS.md.

    python recipes/eval_recorded_split.py BUNDLE DATA... --out DIR [--by source]

DATA are the datasets (or manifests) it was trained on; the bundle's images.npz says which rows were its
validation split (cxrkit.data.fingerprint.apply_recorded_split). Runs `cxr evaluate --split val --by ...` on
them (a manifest's ``origin`` column, where present, refines ``source`` to SOURCE:ORIGIN), writing DIR/report.md, DIR/metrics.json and DIR/evaluate.json (the per-group tables).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pandas as pd

from cxrkit.data import load_datasets
from cxrkit.data.fingerprint import apply_recorded_split
from cxrkit.data.manifest import write_manifest
from cxrkit.models import load_bundle


def _origins(data: list[str]) -> dict[str, str]:
    """Resolved image path -> the ``origin`` column of the manifests among ``data`` (cxrkit keeps no such column)."""
    out = {}
    for item in data:
        if item.endswith(".csv"):
            frame = pd.read_csv(item)
            if "origin" in frame:
                base = Path(item).parent
                out.update({str((base / p).resolve()): o for p, o in zip(frame["path"], frame["origin"], strict=True)})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("data", nargs="+")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--by", action="append", default=None)
    args = ap.parse_args()
    record = load_bundle(args.bundle).split_record()
    if record is None:
        raise SystemExit(f"{args.bundle} records no split.")
    table = apply_recorded_split(load_datasets(args.data), record)
    origin = _origins(args.data)  # recipes/manifests.py's finer origin (NIH 64 px vs 256 px; RDB Spain vs USA)
    if origin:
        table.frame["source"] = [
            f"{s}:{origin.get(str(Path(p).resolve()), '?')}"
            for s, p in zip(table.frame["source"], table.frame["path"], strict=True)
        ]
    args.out.mkdir(parents=True, exist_ok=True)
    manifest = write_manifest(table, args.out / "recorded_split.csv")
    by = [x for b in args.by or ["source"] for x in ("--by", b)]
    cmd = [sys.executable, "-m", "cxrkit.cli", "evaluate", "--model", str(args.bundle), str(manifest)]
    cmd += ["--split", "val", *by, "--out", str(args.out), "--json"]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    (args.out / "evaluate.json").write_text(result.stdout)
    sys.stderr.write(result.stderr[-2000:])
    raise SystemExit(result.returncode)


if __name__ == "__main__":
    main()
