"""`covid3` on hospitals it never saw while both COVID-19 sources stay in training: leave-site-out inside the
COVID-19 image collection (its metadata names each image's hospital or city).

    python recipes/covid3_site_out.py                      # the shipped head's embeddings
    python recipes/covid3_site_out.py runs/linear_head/emb*_covid3.npz   # every cached backbone / input variant

Leave-one-*dataset*-out (recipes/lso_auroc_ci.py) removes one of the only two COVID-19 sources, which the shipped
model never lacks. Here the collection's sites are split into 5 groups (GroupKFold on `location`, images without
one grouped together); each group is scored by the shipped recipe's head (source-balanced logistic regression on
the frozen Lite1 240 px lung-crop features) fitted on every other row: the Radiography DB, NIH, Kaggle and the
collection's other sites. That is the shape of the team's held-out measure (COVID-19 from hospitals the model
never saw, against their non-COVID images), on 427 COVID-19 and 96 non-COVID adult images.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupKFold

sys.path.insert(0, str(Path(__file__).parent))
import linear_head as lh

from cxrkit.evaluation.thresholds import threshold_for_sensitivity
from cxrkit.models import load_bundle
from cxrkit.training.data_prep import prepare_table
from cxrkit.training.recipe import load_recipe

EMBEDDINGS = Path("runs/linear_head/emb240_imagenet_crop0.1_lite1_covid3.npz")
COLLECTION = "covid-chestxray"


def site_of(paths: pd.Series, data: Path) -> np.ndarray:
    """Each collection image's `location` (the metadata row of its file name); '(none)' where not given."""
    meta = pd.read_csv(data / COLLECTION / "metadata.csv", usecols=["filename", "location"])
    where = dict(zip(meta["filename"], meta["location"].fillna("(none)"), strict=True))
    return np.array([where.get(Path(p).name, "(none)") for p in paths])


def main(files: list[str], data: Path = Path("../shared/data")) -> int:
    table = prepare_table(load_recipe("recipes/covid3.yaml", ["data.validation=split"]).data)
    paths, src, Y = table.frame["path"].to_numpy(), table.frame["source"].to_numpy(), table.labels
    rows = np.flatnonzero(src == COLLECTION)
    sites = site_of(pd.Series(paths[rows]), data)
    for f in files or [str(EMBEDDINGS)]:
        print(f"== {f}")
        site_out(f, paths, src, Y, rows, sites, list(table.label_space.classes).index("COVID-19"))
    return 0


def site_out(f: str, paths, src, Y, rows, sites, j: int) -> None:
    """The collection's sites held out in 5 groups, scored by heads fitted on everything else; printed."""
    X = lh.cached_embeddings(f, paths)
    p = np.full(len(X), np.nan)
    for _, held in GroupKFold(n_splits=5).split(rows, groups=sites):
        test = np.zeros(len(X), bool)
        test[rows[held]] = True
        W, B = lh.fit_covid3(X[~test], Y[~test], src[~test], True)
        p[test] = lh.probs_of("multiclass", X[test], W, B)[:, j]
    y, s = Y[rows, j], p[rows]
    stored = load_bundle("covid3").thresholds["COVID-19"]
    t85 = threshold_for_sensitivity(y, s, 0.85)
    rng = np.random.default_rng(0)
    boot = [roc_auc_score(y[i], s[i]) for i in rng.integers(0, len(y), (500, len(y))) if 0 < y[i].sum() < len(i)]
    lo, hi = np.percentile(boot, [2.5, 97.5])
    print(f"held-out collection sites: {int(y.sum())} COVID-19 vs {int((y == 0).sum())} non-COVID")
    print(f"COVID-19 AUROC {roc_auc_score(y, s):.3f} [{lo:.3f}, {hi:.3f}]")
    for name, t in (("shipped threshold", stored), ("threshold for sensitivity 0.85 read here", t85)):
        print(f"{name} {t:.4g}: sensitivity {(s[y == 1] >= t).mean():.3f}, specificity {(s[y == 0] < t).mean():.3f}")
    # within one site: the team's within-hospital measure, where a site has at least 3 images of each side
    for site in sorted(set(sites)):
        m = sites == site
        if min(y[m].sum(), (y[m] == 0).sum()) >= 3:
            print(
                f"  within {site}: {int(y[m].sum())} vs {int((y[m] == 0).sum())}, AUROC {roc_auc_score(y[m], s[m]):.3f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
