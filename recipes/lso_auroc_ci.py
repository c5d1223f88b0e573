"""95% bootstrap CIs of covid3's held-out COVID-19 AUROC, from linear_head.py's cached embeddings.

    python recipes/lso_auroc_ci.py runs/linear_head/emb64_imagenet_covid3.npz [more .npz ...]
    python recipes/lso_auroc_ci.py runs/linear_head/emb*_covid3.npz   # every backbone and size embedded

Each source is scored once by the head refitted without it (as linear_head.leave_source_out does); each measure's
held-out images are then resampled 500 times (seed 0) with the heads fixed. Last: the specificity on the
pooled adult non-COVID images at the threshold that finds 85% of the pooled out-of-source COVID-19 images.
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

SENS = 0.85  # the team's operating point for covid3: sensitivity >= 0.85 on COVID-19 of unseen hospitals


def spec_at_sensitivity(p: np.ndarray, y: np.ndarray, sens: float) -> float:
    """Specificity at the highest threshold that still finds ``sens`` of the positives.

    The threshold is read off the same held-out positives (an oracle operating point): it says how well the
    scores could separate there, not what a stored threshold achieves.
    """
    pos = np.sort(p[y == 1])[::-1]
    t = pos[int(np.ceil(sens * len(pos))) - 1]
    return float((p[y == 0] < t).mean())


def main(files: list[str]) -> int:
    table = prepare_table(load_recipe("recipes/covid3.yaml", []).data)
    paths, src, Y = table.frame["path"].to_numpy(), table.frame["source"].to_numpy(), table.labels
    j = list(table.label_space.classes).index("COVID-19")
    normal = list(table.label_space.classes).index("NORMAL")
    for f in files:
        rng = np.random.default_rng(0)  # per file: a file's CIs do not depend on the files before it
        # every source scored once, by the fold model that never saw it
        p_out = lh.out_of_source_probs(lh.cached_embeddings(f, paths), Y, src)[:, j]
        collection, covid_or_normal = src == "covid-chestxray", (Y[:, j] == 1) | (Y[:, normal] == 1)
        measures = {
            "covid-chestxray": collection,
            "covid19-radiography-db": src == "covid19-radiography-db",
            # COVID-19 against the collection's own normals only (19): the team's within-hospital measure
            "covid-chestxray vs NORMAL": collection & covid_or_normal,
        }
        out = []
        for name, rows in measures.items():
            p, y = p_out[rows], Y[rows, j]
            boot = [
                roc_auc_score(y[i], p[i]) for i in rng.integers(0, len(y), (500, len(y))) if 0 < y[i].sum() < len(i)
            ]
            lo, hi = np.percentile(boot, [2.5, 97.5])
            out.append(f"{name} {roc_auc_score(y, p):.3f} [{lo:.3f}, {hi:.3f}]")
        # pooled: COVID-19 vs adult non-COVID images of unseen sources (children left out), the shape of the
        # team's "unseen hospitals vs adult non-COVID" measure
        adult = src != "kaggle-pneumonia"
        out.append(f"pooled adult {roc_auc_score(Y[adult, j], p_out[adult]):.3f}")
        out.append(f"spec@sens{SENS} {spec_at_sensitivity(p_out[adult], Y[adult, j], SENS):.3f}")
        print(f, " | ".join(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
