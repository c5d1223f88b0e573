"""Paired bootstrap of a `covid3` head variant minus the shipped head, out of source (from cached embeddings).

    python recipes/lso_paired.py runs/linear_head/emb240_imagenet_crop0.1_lite1_covid3.npz \
        runs/linear_head/emb240_imagenet_crop0.1_{hist,clahe,zscore}_lite1_covid3.npz

The first file is the baseline. Every source is scored by the head refitted without it
(``linear_head.out_of_source_probs``); the same 500 resamples (seed 0) of each measure's held-out images score
both heads, so the interval is that of the difference, narrower than comparing two separate CIs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).parent))
import linear_head as lh

from cxrkit.training.data_prep import prepare_table
from cxrkit.training.recipe import load_recipe


def main(baseline: str, variants: list[str]) -> int:
    table = prepare_table(load_recipe("recipes/covid3.yaml", []).data)
    paths, src, Y = table.frame["path"].to_numpy(), table.frame["source"].to_numpy(), table.labels
    classes = list(table.label_space.classes)
    j, normal = classes.index("COVID-19"), classes.index("NORMAL")

    def covid_out_of_source(f: str) -> np.ndarray:
        return lh.out_of_source_probs(lh.cached_embeddings(f, paths), Y, src)[:, j]

    collection = src == "covid-chestxray"
    measures = {
        "collection": collection,
        "collection vs NORMAL": collection & ((Y[:, j] == 1) | (Y[:, normal] == 1)),
        "Radiography DB": src == "covid19-radiography-db",
        "pooled adult": src != "kaggle-pneumonia",
    }
    base = covid_out_of_source(baseline)
    for f in variants:
        var, rng, out = covid_out_of_source(f), np.random.default_rng(0), []
        for name, rows in measures.items():
            y, a, b = Y[rows, j], base[rows], var[rows]
            d = [roc_auc_score(y[i], b[i]) - roc_auc_score(y[i], a[i])
                 for i in rng.integers(0, len(y), (500, len(y))) if 0 < y[i].sum() < len(i)]  # fmt: skip
            lo, hi = np.percentile(d, [2.5, 97.5])
            out.append(f"{name} {roc_auc_score(y, b) - roc_auc_score(y, a):+.3f} [{lo:+.3f}, {hi:+.3f}]")
        print(Path(f).name, "minus baseline:", " | ".join(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
