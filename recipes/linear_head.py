"""`all` and `covid3` as a linear head on a frozen backbone, fitted in closed form on 2 CPU cores.

    python recipes/manifests.py --data ../shared/data
    python recipes/linear_head.py                 # runs/{all,covid3}_linear/bundle + runs/linear_head/lso_imagenet.json
    python recipes/linear_head.py --lungs crop --only covid3 --no-bundle   # lung-cropped inputs: lso_imagenet_crop0.1.json
    ... --lungs crop --equalize clahe      # each crop equalised before resizing: caches/reports tagged _clahe

Why: fine-tuning EfficientNet-Lite0 on ~3,500 multi-source images did not finish one epoch in 45 minutes on
the shared 2-core machine (docs/RESULTS.md). Here the backbone (ImageNet EfficientNet-Lite0, 64 px; the
`pneumonia` network's CXR features generalised worse out of source) is frozen, every image is embedded once,
and the output layer is a source-balanced logistic regression (each (source, label) cell weighs the same), folded into the network's own classifier so the
bundle is an ordinary EfficientNet-Lite0 bundle. The same embeddings give the leave-source-out figures:
the head is refitted without one whole source and scored on that source only.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from cxrkit.core.preprocess import Preprocessing
from cxrkit.core.task import LabelSpace
from cxrkit.data import load_datasets
from cxrkit.data.fingerprint import split_record
from cxrkit.evaluation import choose_thresholds, evaluate_predictions, without_curves
from cxrkit.models import create_model, save_bundle
from cxrkit.models.engine import Engine, InferenceOptions
from cxrkit.models.lungs import LungPreprocessor, LungSpec
from cxrkit.training.data_prep import data_summary, intended_input, prepare_table
from cxrkit.training.precision import run_bf16_check
from cxrkit.training.recipe import load_recipe

# ImageNet features held up better out of source than the Kaggle-trained `pneumonia` network's
# (recipes/probe_ablation.py; docs/RESULTS.md), so the shipped heads sit on the ImageNet backbone.
BACKBONE = "imagenet"
PNEUMONIA_BACKBONE = "src/cxrkit/models/shipped/pneumonia/model.safetensors"
C = 0.05  # inverse L2 strength (1280 features, a few thousand images)
ARCH = "efficientnet_lite0"  # --arch efficientnet_lite1/2: the larger offline ImageNet backbones


@dataclasses.dataclass(frozen=True)
class Backbone:
    """The frozen network and the input it sees: every setting that changes the embeddings.

    ``lungs`` crop/mask: each image cut to (or masked to) its lungs by the shipped segmenter before resizing, as
    a recipe's ``preprocess: {lungs: ...}`` does; ``equalize``: per-image equalisation after that step.
    """

    size: int = 64
    weights: str = BACKBONE  # imagenet, or a cxrkit weights file
    arch: str = ARCH
    lungs: str | None = None
    margin: float = 0.1
    equalize: str | None = None

    def prep(self) -> Preprocessing:
        return Preprocessing(
            image_size=self.size, resize="squash", mean=0.5, std=0.5, lungs=self.lungs, lung_margin=self.margin,
            equalize=self.equalize,
        )  # fmt: skip

    def model(self, space: LabelSpace) -> torch.nn.Module:
        return create_model(self.arch, space, weights=self.weights).eval()

    @property
    def input_tag(self) -> str:
        """Suffix of caches, bundles and reports: one per lung, equalisation and backbone setting ('' for none)."""
        lungs = (
            "" if self.lungs is None else f"_{self.lungs}{self.margin:g}" if self.lungs == "crop" else f"_{self.lungs}"
        )
        equalize = f"_{self.equalize}" if self.equalize else ""
        arch = "" if self.arch == ARCH else "_" + self.arch.removeprefix("efficientnet_")
        return lungs + equalize + arch

    def recipe_overrides(self) -> list[str]:
        """The recipe ``--set``s that record these settings in a bundle, as applied."""
        sets = [f"model.arch={self.arch}", f"model.image_size={self.size}", f"model.weights={self.weights}"]
        sets += [f"preprocess.lungs={self.lungs}", f"preprocess.margin={self.margin}"] if self.lungs else []
        return sets + ([f"preprocess.equalize={self.equalize}"] if self.equalize else [])


def cached_embeddings(cache: str | Path, paths) -> np.ndarray:
    """The rows of an embedding cache written by :func:`embeddings`, in the order of ``paths`` (float32)."""
    z = np.load(cache, allow_pickle=True)
    return pd.DataFrame(z["X"], index=z["paths"]).loc[paths].to_numpy(np.float32)


def embeddings(manifest: str, backbone: Backbone, cache: Path) -> pd.DataFrame:
    """Penultimate features of every manifest row, cached (one forward pass per image); lung masks are cached
    on disk, so crop and mask share them."""
    if cache.is_file():
        z = np.load(cache, allow_pickle=True)
        return pd.DataFrame(z["X"], index=z["paths"])
    table = load_datasets([manifest])
    space = LabelSpace.exclusive_from(["NORMAL", "ABNORMAL"])  # one output; only the backbone is used
    if backbone.lungs:
        # segment in batches first (the engine would segment one image at a time)
        spec = LungSpec(lungs=backbone.lungs, margin=backbone.margin)
        LungPreprocessor(spec).warm_cache(list(table.frame["path"]))
    options = InferenceOptions(precision="fp32", batch_size=64, num_workers=1)
    X = Engine.for_model(backbone.model(space), space, backbone.prep(), options=options).run_table(table, "embedding")
    np.savez(cache, X=X, paths=np.array(table.frame["path"]))
    return pd.DataFrame(X, index=table.frame["path"].to_numpy())


def _weights(source: np.ndarray, y: np.ndarray) -> np.ndarray:
    key = pd.Series(source).astype(str) + "|" + pd.Series(y).astype(str)
    w = (1.0 / key.map(key.value_counts())).to_numpy()
    return w * len(w) / w.sum()


def fit_head(X: np.ndarray, y: np.ndarray, source: np.ndarray, balance: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(W, b) of logistic regression(s) on standardised features, folded back to raw features."""
    mu, sd = X.mean(0), X.std(0) + 1e-6
    Z = (X - mu) / sd
    w = _weights(source, y) if balance else None
    clf = LogisticRegression(C=C, max_iter=1000, class_weight=None if balance else "balanced")
    clf.fit(Z, y, sample_weight=w)
    coef, bias = clf.coef_ / sd, clf.intercept_ - (clf.coef_ * (mu / sd)).sum(1)
    return coef.astype(np.float32), bias.astype(np.float32)


def fit_all(X, Y, source, balance=True, only=None):
    """One binary head per finding on the rows that label it (NaN rows masked, like the masked BCE)."""
    W, B = np.zeros((Y.shape[1], X.shape[1]), np.float32), np.zeros(Y.shape[1], np.float32)
    for j in range(Y.shape[1]):
        ok = np.isfinite(Y[:, j]) & (only is None or j in only)
        if ok.sum() and 0 < Y[ok, j].sum() < ok.sum():
            W[j], B[j] = (a[0] for a in fit_head(X[ok], Y[ok, j], source[ok], balance))
        else:
            B[j] = -5.0
    return W, B


def fit_covid3(X, Y, source, balance=True):
    coef, bias = fit_head(X, Y.argmax(1), source, balance)
    return coef, bias


def probs_of(space_task: str, X, W, B) -> np.ndarray:
    logits = X @ W.T + B
    if space_task == "multiclass":
        e = np.exp(logits - logits.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)
    return 1 / (1 + np.exp(-logits))


def build(
    name: str,
    recipe_path: str,
    backbone: Backbone,
    out_root: Path,
    bundle: bool = True,
    both: bool = True,
    describe: str | None = None,
) -> dict:
    # in-source figures need a patient split; recipes/all.yaml now validates leave-one-source-out (the GPU
    # fine-tune), and this script does its own leave-source-out folds below
    recipe = load_recipe(recipe_path, [*backbone.recipe_overrides(), "data.validation=split"])
    table = prepare_table(recipe.data)
    tag = ("_imagenet" if backbone.weights == "imagenet" else "") + backbone.input_tag
    # the default run embeds `all`'s manifest (a superset of covid3's) first and both reuse that cache;
    # one model alone (--only) gets its own cache so that it cannot stand in for the superset
    tag += "" if both else f"_{name}"
    emb = embeddings(recipe.data.sources[0], backbone, out_root / f"emb{backbone.size}{tag}.npz")
    X = emb.loc[table.frame["path"].to_numpy()].to_numpy(np.float32)
    src = table.frame["source"].to_numpy()
    space, Y = table.label_space, table.labels
    tr, va = (table.frame["split"] == "train").to_numpy(), (table.frame["split"] == "val").to_numpy()
    fit = fit_all if space.task.value == "multilabel" else fit_covid3
    W, B = fit(X[tr], Y[tr], src[tr], True)
    p_val = probs_of(space.task.value, X[va], W, B)
    val = table.split("val")
    out_of_source = None
    if space.task.value == "multiclass":
        # the COVID-19 operating point, chosen where the model meets hospitals it never saw (recipe `threshold`)
        out_of_source, thresholds, method = _out_of_source_operating_point(X, Y, src, space, recipe.threshold)
    else:
        thresholds, method = choose_thresholds(space, val.labels, p_val, method="youden_band"), "youden_band"
    result = evaluate_predictions(space, val.labels, p_val, thresholds=thresholds, n_boot=1000)
    metrics = without_curves(result)
    d = {"X": X, "Y": Y, "src": src, "space": space, "frame": table.frame, "val": metrics, "oos": out_of_source}
    if not bundle:
        return d
    model = backbone.model(space)
    with torch.no_grad():
        model.get_classifier().weight.copy_(torch.from_numpy(W))
        model.get_classifier().bias.copy_(torch.from_numpy(B))
    prep = backbone.prep()
    check = run_bf16_check(model, space, val, prep, probs_fp32=p_val)
    save_bundle(
        out_root.parent / f"{name}_linear{backbone.input_tag}" / "bundle",
        model,
        backbone.arch,
        space,
        prep,
        thresholds=thresholds,
        metrics={"validation": metrics, **({"leave_source_out": out_of_source} if out_of_source else {})},
        data_summary=data_summary(table, recipe.data),
        license=recipe.license,
        images=split_record(table.split("train"), val),  # `cxr evaluate` then warns on images it has seen
        intended_input=_intended(table, recipe, describe),
        extra={
            "recipe": recipe.to_dict(),
            "method": f"frozen backbone ({backbone.weights}) + source-balanced logistic-regression head, C={C}: "
            "recipes/linear_head.py",
            "threshold_method": method,
            "precision_check": {"bf16": check},
        },
    )
    return d


def out_of_source_probs(X, Y, src) -> np.ndarray:
    """Every row scored by the covid3 head refitted without its whole source (N x 3)."""
    p = np.zeros(Y.shape, np.float64)
    for held in sorted(set(src)):
        tr, te = src != held, src == held
        W, B = fit_covid3(X[tr], Y[tr], src[tr], True)
        p[te] = probs_of("multiclass", X[te], W, B)
    return p


def _out_of_source_operating_point(X, Y, src, space, spec):
    """(pooled out-of-source metrics, {class: threshold}, method): the recipe's ``threshold`` section chosen on
    the pooled leave-source-out probabilities, as ``cxr train`` does under ``data.validation: loso``."""
    if spec.operating_class is None:
        return None, None, "argmax"
    oos = out_of_source_probs(X, Y, src)
    chosen = choose_thresholds(space, Y, oos, spec.method, spec.target_sensitivity, spec.operating_class)
    pooled = without_curves(evaluate_predictions(space, Y, oos, thresholds=chosen, n_boot=1000))
    adult = src != "kaggle-pneumonia"  # the team's measure: COVID-19 vs adult non-COVID of unseen hospitals
    pooled["operating_point_adults"] = evaluate_predictions(space, Y[adult], oos[adult], chosen, n_boot=1000)[
        "operating_point"
    ]
    return pooled, chosen, spec.method


def _intended(table, recipe, describe: str | None):
    """The measured sizes of the training images, described in words where ``describe`` says what they are."""
    measured = intended_input(table, recipe.data)
    return dataclasses.replace(measured, description=describe) if describe and measured else measured


def _scores(y, p, decided) -> dict:
    ok = np.isfinite(y)
    y, p, decided = y[ok], p[ok], decided[ok]
    out = {"n": len(y), "pos": int((y == 1).sum())}
    if 0 < out["pos"] < len(y):
        out["auroc"] = round(float(roc_auc_score(y, p)), 3)
    if out["pos"]:
        out["sens"] = round(float(decided[y == 1].mean()), 3)
    if out["pos"] < len(y):
        out["spec"] = round(float(1 - decided[y == 0].mean()), 3)
    return out


def leave_source_out(d: dict, balance: bool = True, train_sources: list[str] | None = None) -> dict:
    """Refit the head without each source (all its rows) and score it on that source only."""
    X, Y, src, space = d["X"], d["Y"], d["src"], d["space"]
    classes = list(space.classes)
    out = {}
    for held in sorted(set(src)):
        tr = (src != held) & (np.isin(src, train_sources) if train_sources else True)
        te = src == held
        if space.task.value == "multiclass":
            if len(np.unique(Y[tr].argmax(1))) < len(classes):
                continue
            W, B = fit_covid3(X[tr], Y[tr], src[tr], balance)
            p = probs_of("multiclass", X[te], W, B)
            j = classes.index("COVID-19")
            out[held] = {"COVID-19 vs rest": _scores(Y[te, j], p[:, j], p.argmax(1) == j)}
            # the team's within-hospital measure is COVID-19 against normals of the same hospital
            pair = (Y[te, j] == 1) | (Y[te, classes.index("NORMAL")] == 1)
            if 0 < Y[te, j][pair].sum() < pair.sum():
                out[held]["COVID-19 vs NORMAL"] = _scores(Y[te, j][pair], p[pair, j], p[pair].argmax(1) == j)
        else:
            # the three shared findings; the 13 other NIH findings only where NIH is the held-out source
            keep = {classes.index(c) for c in ("COVID-19", "Pneumonia", "No Finding")}
            if np.isfinite(Y[te]).all():
                keep = set(range(len(classes)))
            W, B = fit_all(X[tr], Y[tr], src[tr], balance, only=keep)
            p = probs_of("multilabel", X[te], W, B)
            # thresholds from the training sources only (youden per finding): nothing of the held-out source
            p_tr = probs_of("multilabel", X[tr], W, B)
            res = {}
            for cls in ("COVID-19", "Pneumonia", "No Finding"):
                j = classes.index(cls)
                ok = np.isfinite(Y[tr, j])
                t = choose_thresholds_1(Y[tr][ok, j], p_tr[ok, j])
                res[cls] = _scores(Y[te, j], p[:, j], p[:, j] >= t)
            nf = classes.index("No Finding")
            pn = classes.index("Pneumonia")
            both = (Y[te, pn] == 1) | (Y[te, nf] == 1)
            res["Pneumonia vs No Finding"] = _scores(Y[te, pn][both], p[both, pn], p[both, pn] >= 0.5)
            aucs = []
            for c in classes:
                j = classes.index(c)
                ok = np.isfinite(Y[te, j])
                if c not in ("COVID-19", "No Finding") and 0 < np.nansum(Y[te, j]) < ok.sum():
                    aucs.append(roc_auc_score(Y[te, j][ok], p[ok, j]))
            if aucs:
                res["mean AUROC of the NIH findings it labels"] = round(float(np.mean(aucs)), 3)
            out[held] = res
    return out


def choose_thresholds_1(y, p) -> float:
    from cxrkit.evaluation.thresholds import youden_threshold

    return youden_threshold(y, p)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--out", type=Path, default=Path("runs/linear_head"))
    ap.add_argument(
        "--backbone", default=BACKBONE, help="imagenet, or a cxrkit weights file (e.g. the pneumonia bundle's)"
    )
    ap.add_argument("--lungs", choices=("crop", "mask"), help="lung-aware preprocessing of every image")
    ap.add_argument("--margin", type=float, default=0.1, help="--lungs crop: lung box grown by this fraction")
    ap.add_argument(
        "--equalize", choices=("hist", "clahe", "zscore"), help="per-image equalisation after the lung step"
    )
    ap.add_argument("--only", choices=("all", "covid3"), help="one model instead of both")
    ap.add_argument("--arch", default=ARCH, choices=(ARCH, "efficientnet_lite1", "efficientnet_lite2"))
    ap.add_argument("--describe", help="the intended input in words, for the card (default: the measured sizes)")
    ap.add_argument("--no-bundle", action="store_true", help="figures only: no bundle, no bf16 check")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    report = {}
    backbone = Backbone(args.size, args.backbone, args.arch, args.lungs, args.margin, args.equalize)
    for name in [args.only] if args.only else ["all", "covid3"]:
        d = build(
            name, f"recipes/{name}.yaml", backbone, args.out, not args.no_bundle, args.only is None, args.describe
        )
        report[name] = {
            "in-source validation": {k: d["val"].get(k) for k in ("n", "mean_auroc", "macro_auroc", "accuracy")},
            "in-source per class AUROC": {
                c: v.get("auroc") for c, v in (d["val"].get("per_label") or d["val"].get("per_class") or {}).items()
            },
            "leave-source-out (source-balanced)": leave_source_out(d, True),
        }
        if name == "covid3":
            report[name]["leave-source-out (not balanced, class-weighted)"] = leave_source_out(d, False)
            # without the adult NIH negatives (held out RDB: the old covid3 data, Kaggle + the collection)
            report[name]["leave-source-out, trained without NIH"] = leave_source_out(
                d, True, ["kaggle-pneumonia", "covid-chestxray", "covid19-radiography-db"]
            )
        print(json.dumps(report[name], indent=1), flush=True)
    suffix = backbone.input_tag + ("" if args.size == 64 else f"_{args.size}px")
    suffix += f"_{args.only}" if args.only else ""
    (args.out / f"lso_{Path(args.backbone).stem}{suffix}.json").write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
