"""Leave-source-out test of a source-blind linear head: project out the directions that tell hospitals apart.

    python recipes/linear_head.py --only covid3 --no-bundle          # the embedding cache (64 px, Lite0)
    python recipes/source_nullspace.py --size 64 [--arch efficientnet_lite0] [--rounds 1 2 4 8]

Within one class (NORMAL, PNEUMONIA, COVID-19), a linear classifier of the source finds the directions in
which hospitals differ for reasons other than the finding; iterative null-space projection (INLP, Ravfogel et
al. 2020) removes them before the class head is fitted. The projection is linear, so it folds into the head
and a bundle stays an ordinary network. Every fold learns its directions from the training sources only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import linear_head as lh
import numpy as np
from sklearn.linear_model import LogisticRegression, RidgeClassifier


def source_directions(Z: np.ndarray, cls: np.ndarray, src: np.ndarray, rounds: int, clf: str) -> np.ndarray:
    """Orthonormal rows spanning the within-class source directions found in ``rounds`` INLP rounds.

    ``clf`` logistic: few, strong directions a round (slow); ridge: closed form, so tens of rounds are cheap.
    """
    basis = np.zeros((0, Z.shape[1]))
    for _ in range(rounds):
        Zp = Z - (Z @ basis.T) @ basis if len(basis) else Z
        found = []
        for c in np.unique(cls):
            rows = cls == c
            if len(np.unique(src[rows])) < 2:
                continue
            if clf == "ridge":
                model = RidgeClassifier(alpha=len(Zp), class_weight="balanced").fit(Zp[rows], src[rows])
            else:
                model = LogisticRegression(C=lh.C, max_iter=1000, class_weight="balanced").fit(Zp[rows], src[rows])
            found.append(model.coef_)
        if not found:
            break
        stacked = np.vstack([basis, *found])
        _, s, vt = np.linalg.svd(stacked, full_matrices=False)
        basis = vt[s > 1e-6 * s[0]]
    return basis


def fit_blind(X, Y, src, rounds, clf="logistic"):
    """(W, B) on raw features: standardise, project out the source directions, source-balanced head."""
    mu, sd = X.mean(0), X.std(0) + 1e-6
    Z = (X - mu) / sd
    cls = Y.argmax(1)
    V = source_directions(Z, cls, src, rounds, clf)
    P = np.eye(Z.shape[1]) - V.T @ V
    w = lh._weights(src, cls)
    clf = LogisticRegression(C=lh.C, max_iter=1000).fit(Z @ P, cls, sample_weight=w)
    coef = (clf.coef_ @ P) / sd  # P is symmetric: logits = ((x - mu) / sd) P W^T + b
    bias = clf.intercept_ - (coef * mu).sum(1)
    return coef.astype(np.float32), bias.astype(np.float32), len(V)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--arch", default=lh.ARCH)
    ap.add_argument("--rounds", type=int, nargs="+", default=[0, 1, 2, 4, 8])
    ap.add_argument("--out", type=Path, default=Path("runs/linear_head"))
    ap.add_argument("--clf", choices=("logistic", "ridge"), default="logistic", help="the source classifier")
    args = ap.parse_args(argv)
    backbone = lh.Backbone(size=args.size, arch=args.arch)
    d = lh.build("covid3", "recipes/covid3.yaml", backbone, args.out, bundle=False, both=False)
    X, Y, src = d["X"], d["Y"], d["src"]
    j = list(d["space"].classes).index("COVID-19")
    report = {}
    for rounds in args.rounds:
        res = {}
        for held in sorted(set(src)):
            tr, te = src != held, src == held
            W, B, k = fit_blind(X[tr], Y[tr], src[tr], rounds, args.clf)
            p = lh.probs_of("multiclass", X[te], W, B)
            res[held] = {**lh._scores(Y[te, j], p[:, j], p.argmax(1) == j), "directions": k}
        report[f"rounds={rounds}"] = res
        print(rounds, json.dumps(res), flush=True)
    name = f"nullspace_{args.clf}{backbone.input_tag}_{args.size}px_covid3.json"
    (args.out / name).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
