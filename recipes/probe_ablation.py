"""Linear-probe ablations on frozen embeddings: which training data helps out of source (cheap on 2 cores).

    python recipes/probe_ablation.py [--backbone imagenet|PATH] [--size 64]

Embeds runs/manifests/all.csv once (cached in runs/linear_head/), then fits COVID-19-vs-rest and
pneumonia-vs-no-finding heads on some sources and scores them on a held-out one, with and without
source-balanced weights. Thresholds: Youden on the training rows (nothing of the held-out source).
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).parent))
from linear_head import PNEUMONIA_BACKBONE as BACKBONE
from linear_head import Backbone, embeddings

ap = argparse.ArgumentParser()
ap.add_argument("--backbone", default=BACKBONE, help="imagenet or a weights file (default: the pneumonia bundle)")
ap.add_argument("--size", type=int, default=64)
args = ap.parse_args()
tag = "" if args.backbone == BACKBONE else "_" + Path(args.backbone).stem
backbone = Backbone(size=args.size, weights=args.backbone)
emb = embeddings("runs/manifests/all.csv", backbone, Path(f"runs/linear_head/emb{args.size}{tag}.npz"))
X, paths = emb.to_numpy(), emb.index.to_numpy()
m = pd.read_csv("runs/manifests/all.csv").set_index("path").loc[paths].reset_index()
src = m["source"].to_numpy()
org = m["origin"].to_numpy()
Y = {c: m[f"label:{c}"].to_numpy(float) for c in ("COVID-19", "Pneumonia", "No Finding")}
is_pn_or_nf = (Y["Pneumonia"] == 1) | (Y["No Finding"] == 1)


def fit_eval(train, test, y, balance_sources, C=0.5):
    tr = train & np.isfinite(y)
    te = test & np.isfinite(y)
    w = np.ones(tr.sum())
    if balance_sources:  # each (source, label) cell weighs the same in total
        key = pd.Series(src[tr]).astype(str) + "|" + pd.Series(y[tr]).astype(str)
        w = (1.0 / key.map(key.value_counts())).to_numpy().copy()
        w *= len(w) / w.sum()
    sc = StandardScaler().fit(X[tr])
    clf = LogisticRegression(C=C, max_iter=2000, class_weight=None if balance_sources else "balanced")
    clf.fit(sc.transform(X[tr]), y[tr], sample_weight=w)
    p = clf.predict_proba(sc.transform(X[te]))[:, 1]
    yt = y[te]
    # threshold chosen on training rows (no held-out information): Youden on train predictions
    ptr = clf.predict_proba(sc.transform(X[tr]))[:, 1]
    from sklearn.metrics import roc_curve

    f, t, th = roc_curve(y[tr], ptr)
    thr = th[np.argmax(t - f)]
    out = {"n": int(te.sum()), "pos": int(yt.sum())}
    if 0 < yt.sum() < len(yt):
        out["auroc"] = round(roc_auc_score(yt, p), 3)
    out["sens"] = round(float((p[yt == 1] >= thr).mean()), 3) if (yt == 1).any() else None
    out["spec"] = round(float((p[yt == 0] < thr).mean()), 3) if (yt == 0).any() else None
    return out


S = {"K": "kaggle-pneumonia", "C": "covid-chestxray", "R": "covid19-radiography-db", "N": "nih-chestxray14"}


def rows(keys):
    return np.isin(src, [S[k] for k in keys])


res = {}
# COVID-19 vs rest, held-out source in the test column
for name, train_keys, test_key in [
    ("covid: K+C -> R (old covid3 data)", "KC", "R"),
    ("covid: K+C+N -> R (+ adult NIH negatives)", "KCN", "R"),
    ("covid: K+R -> C", "KR", "C"),
    ("covid: K+R+N -> C (+ adult NIH negatives)", "KRN", "C"),
    ("covid: R+N -> C (no children)", "RN", "C"),
]:
    for bal in (False, True):
        res[f"{name} | source-balanced={bal}"] = fit_eval(rows(train_keys), rows(test_key), Y["COVID-19"], bal)
# Pneumonia vs no finding on NIH (unseen source), trained without NIH
pn = np.where(is_pn_or_nf, Y["Pneumonia"], np.nan)
for name, train_keys in [("pneumonia: K -> N", "K"), ("pneumonia: K+C+R -> N", "KCR")]:
    for bal in (False, True):
        res[f"{name} | source-balanced={bal}"] = fit_eval(rows(train_keys), rows("N"), pn, bal)
print(json.dumps({k: v for k, v in res.items() if v is not None}, indent=1))
