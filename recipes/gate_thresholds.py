"""Stop a multi-label bundle from calling findings its validation cannot support.

A finding whose validation had fewer than ``--min-positives`` positives, or whose AUROC confidence interval
reaches chance, gets threshold 1.0: its probability is still reported, but it is never listed as a finding.
Youden thresholds on 1-9 positives landed at p = 0.0004-0.04 for `all` and listed Mass or Hernia on most images.

    .venv/bin/python recipes/gate_thresholds.py src/cxrkit/models/shipped/all
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cxrkit.models.records import CONFIG_FILE, rewrite_bundle

NEVER = 1.0


def gate(config: dict, min_positives: int) -> list[str]:
    """Set unsupported findings' thresholds to 1.0 in ``config``; return a note per finding gated."""
    per_label = dict(config["metrics"]["validation"]["per_label"])
    notes = []
    for name, row in per_label.items():
        low = (row.get("auroc_ci") or [0.0, 0.0])[0]
        if row.get("n_positive", 0) < min_positives or low is None or low <= 0.5:
            config["thresholds"][name] = NEVER
            row["threshold"] = NEVER
            notes.append(f"{name}: {row.get('n_positive', 0)} validation positives, AUROC CI low {low:.2f}")
    config["metrics"]["validation"]["per_label"] = per_label
    return notes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--min-positives", type=int, default=10)
    args = ap.parse_args()
    config = json.loads((args.bundle / CONFIG_FILE).read_text(encoding="utf-8"))
    notes = gate(config, args.min_positives)
    recipe = config.setdefault("extra", {}).setdefault("recipe", {})
    recipe["notes"] = (recipe.get("notes") or "").rstrip() + (
        "\nNever called (threshold 1.0; probability still shown) because validation cannot support a threshold: "
        + "; ".join(notes)
        + "."
    )
    rewrite_bundle(args.bundle, config)
    print("\n".join(notes))


if __name__ == "__main__":
    main()
