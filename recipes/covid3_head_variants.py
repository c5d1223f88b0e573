"""Two more `covid3` head variants on linear_head.py's cached embeddings, scored leave-source-out (none shipped).

    python recipes/covid3_head_variants.py          # needs runs/linear_head/emb*_covid3.npz (linear_head.py)

- centred: the head trained on within-source-centred features (each training source's mean, or the mean of its
  class means, subtracted), so that only contrasts inside one hospital can train it; scored on raw features.
- ensembles: the out-of-source COVID-19 probabilities of several backbones' heads, averaged.

Each line: held-out collection COVID-19 vs rest | vs its own normals | held-out Radiography DB | pooled COVID-19 vs
adult non-COVID of unseen sources | specificity there at the threshold reaching sensitivity 0.85 (docs/RESULTS.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).parent))
import linear_head as lh

from cxrkit.evaluation.thresholds import threshold_for_sensitivity
from cxrkit.training.data_prep import prepare_table
from cxrkit.training.recipe import load_recipe

CACHE = Path("runs/linear_head")
SHIPPED = "emb240_imagenet_crop0.1_lite1_covid3.npz"
ENSEMBLES = {
    "Lite0 224 + Lite1 240 + Lite2 260, lung crops": [
        "emb224_imagenet_crop0.1_covid3.npz",
        SHIPPED,
        "emb260_imagenet_crop0.1_lite2_covid3.npz",
    ],
    "Lite1 240 lung crop + whole image": [SHIPPED, "emb240_imagenet_lite1_covid3.npz"],
}


def _centred(X: np.ndarray, Y: np.ndarray, src: np.ndarray, mode: str) -> np.ndarray:
    out = X.copy()
    for s in set(src):
        rows = src == s
        if mode == "source mean":
            out[rows] -= X[rows].mean(0)
        else:  # the mean of the source's class means: a source's class mix does not move its centre
            y = Y[rows].argmax(1)
            out[rows] -= np.mean([X[rows][y == k].mean(0) for k in set(y)], axis=0)
    return out


def _line(name: str, p: np.ndarray, Y: np.ndarray, src: np.ndarray, j: int, normal: int) -> str:
    collection, rdb, adult = src == "covid-chestxray", src == "covid19-radiography-db", src != "kaggle-pneumonia"
    pair = collection & ((Y[:, j] == 1) | (Y[:, normal] == 1))
    t = threshold_for_sensitivity(Y[:, j], p, 0.85)
    spec = float((p[adult & (Y[:, j] == 0)] < t).mean())
    aurocs = " | ".join(f"{roc_auc_score(Y[m, j], p[m]):.3f}" for m in (collection, pair, rdb, adult))
    return f"{name}: {aurocs} | {spec:.3f}"


def main() -> int:
    table = prepare_table(load_recipe("recipes/covid3.yaml", []).data)
    paths, src, Y = table.frame["path"].to_numpy(), table.frame["source"].to_numpy(), table.labels
    classes = list(table.label_space.classes)
    j, normal = classes.index("COVID-19"), classes.index("NORMAL")

    def features(name: str) -> np.ndarray:
        return lh.cached_embeddings(CACHE / name, paths)

    X = features(SHIPPED)
    print(_line("shipped head (Lite1 240 lung crop)", lh.out_of_source_probs(X, Y, src)[:, j], Y, src, j, normal))
    for mode in ("source mean", "mean of class means"):
        p = np.zeros(len(X))
        for held in sorted(set(src)):
            tr, te = src != held, src == held
            W, B = lh.fit_covid3(_centred(X[tr], Y[tr], src[tr], mode), Y[tr], src[tr], True)
            p[te] = lh.probs_of("multiclass", X[te], W, B)[:, j]
        print(_line(f"centred on the {mode}", p, Y, src, j, normal), flush=True)
    for name, files in ENSEMBLES.items():
        p = np.mean([lh.out_of_source_probs(features(f), Y, src)[:, j] for f in files], axis=0)
        print(_line(f"ensemble: {name}", p, Y, src, j, normal), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
