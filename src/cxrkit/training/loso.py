"""Leave-one-source-out (LOSO) validation, and the final model it produces.

A split of the same sources rewards whatever identifies a source (scanner, age group, text markers): every
shipped model looked excellent on it and failed in hospitals it never saw. With ``data.validation: loso``:

1. One fold per value of ``data.source_column`` (``cxrkit.data.splits.source_folds``): the fold's model trains
   on every other source and is validated on the held-out one (early stopping on it as well; where the
   held-out source has one class only, its AUROC is undefined and the fold monitors ``val_loss``). Each
   fold is a complete run folder ``<out>/folds/<source>/`` (bundle, report, metrics.csv, result.json).
2. The out-of-source predictions of all folds are pooled (each image scored by the model that never saw its
   source); thresholds are chosen on them (``threshold.method``), and every fold is scored at those
   thresholds. ``<out>/loso.json`` and ``<out>/loso.md`` hold per-source metrics and their mean.
3. With ``data.loso_final`` (default) one model is fitted on every source for the median best epoch count of
   the folds, with no validation split; its bundle (``<out>/bundle``) takes the pooled out-of-source thresholds
   and records the LOSO metrics (``metrics.validation`` = pooled, ``metrics.leave_source_out`` = per source).
   The fold bundles can also teach one network together: ``train.distill_from: [<out>/folds/*/bundle]``.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np

from cxrkit.core.files import atomic_write_text
from cxrkit.core.task import LabelSpace, TaskType, positive_target
from cxrkit.data.splits import source_folds
from cxrkit.data.table import CxrTable
from cxrkit.evaluation import evaluate_predictions, headline_auroc, to_jsonable
from cxrkit.training.data_prep import fold_table, prepare_table
from cxrkit.training.fit import FixedOutcome, fit_table, validate_recipe
from cxrkit.training.recipe import Recipe

log = logging.getLogger(__name__)
FOLD_KEYS = ("n", "n_positive", "auroc", "macro_auroc", "mean_auroc", "accuracy", "sensitivity", "specificity")


def train_loso(recipe: Recipe, progress: bool = True, resume: bool = False) -> dict[str, Any]:
    """Run the LOSO folds, write the per-source report, then (``data.loso_final``) the final model.

    ``resume`` resumes each fold (and the final fit) from its ``last.ckpt``: finished folds end at once.
    Returns ``loso.json``'s content plus ``val_auroc``/``n_val`` (pooled out-of-source) and ``bundle``.
    """
    out = recipe.out_dir
    out.mkdir(parents=True, exist_ok=True)
    L.seed_everything(recipe.train.seed, workers=True, verbose=False)
    table = prepare_table(recipe.data)
    space = table.label_space
    folds = source_folds(table, recipe.data.source_column)
    log.info("leave-one-source-out: %d folds (%s)", len(folds), [f.held_out for f in folds])
    oof = np.full((len(table), space.num_outputs), np.nan, dtype=np.float32)
    runs = []
    for fold in folds:
        ft = fold_table(table, fold)
        fold_recipe = _fold_recipe(recipe, fold.held_out, ft)
        L.seed_everything(recipe.train.seed, workers=True, verbose=False)
        summary, probs = fit_table(fold_recipe, ft, resume=resume, progress=progress)
        if probs is None:  # not rank 0 of a multi-process run
            return {}
        oof[fold.val_index] = probs.reshape(len(fold.val_index), -1)
        runs.append((fold, summary, str(fold_recipe.out_dir), fold_recipe.train.monitor))
    covered = np.concatenate([f.val_index for f in folds])
    labels, probs = table.labels[covered], oof[covered]
    checked = validate_recipe(recipe, space, labels, probs, report=out / "loso_report", title="leave-one-source-out")
    thresholds, pooled_headline = checked.thresholds, checked.metrics
    per_source = {
        fold.held_out: {
            **_fold_metrics(space, table.labels[fold.val_index], oof[fold.val_index], thresholds),
            "n_train": len(fold.train_index),
            "best_epoch": summary.get("best_epoch"),
            "monitor": monitor,
            "run": run_dir,
        }
        for fold, summary, run_dir, monitor in runs
    }
    summary = {
        "name": recipe.name,
        "validation": "leave-one-source-out",
        "source_column": recipe.data.source_column,
        "thresholds": thresholds,
        "threshold_method": recipe.threshold.method,
        "mean_auroc_over_sources": _mean_auroc(per_source),
        "val_auroc": headline_auroc(pooled_headline),  # pooled out-of-source
        "n_val": len(covered),
        "pooled": pooled_headline,
        "per_source": per_source,
    }
    summary = to_jsonable(summary)
    atomic_write_text(out / "loso.json", json.dumps(summary, indent=2))
    atomic_write_text(out / "loso.md", loso_markdown(summary))
    if recipe.data.loso_final:
        summary["final"] = _final_fit(recipe, table, summary, progress, resume)
        summary["bundle"] = summary["final"].get("bundle")
        atomic_write_text(out / "loso.json", json.dumps(to_jsonable(summary), indent=2))
    return summary


def _fold_recipe(recipe: Recipe, held_out: str, ft: CxrTable) -> Recipe:
    """The recipe of one fold: its own run folder, validated on the held-out source."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", held_out).strip("_") or "source"
    train = recipe.train
    if train.monitor != "val_loss" and not auroc_defined(ft.label_space, ft.split("val").labels):
        log.warning("held-out source %r has one class only: its fold stops early on val_loss", held_out)
        train = train.model_copy(update={"monitor": "val_loss"})
    data = recipe.data.model_copy(update={"validation": "split", "val_source": held_out})
    return recipe.model_copy(update={"out": str(recipe.out_dir / "folds" / slug), "data": data, "train": train})


def auroc_defined(space: LabelSpace, labels: np.ndarray) -> bool:
    """Whether the headline AUROC can be computed: both classes (binary), 2+ classes, or one label with both."""
    if space.task is TaskType.BINARY:
        col = positive_target(labels)
        return bool(np.any(col == 1) and np.any(col == 0))
    if space.task is TaskType.MULTICLASS:
        return int((np.nansum(labels, axis=0) > 0).sum()) >= 2
    return bool(np.any(np.any(labels == 1, axis=0) & np.any(labels == 0, axis=0)))


def _fold_metrics(space: LabelSpace, labels: np.ndarray, probs: np.ndarray, thresholds: list[float]) -> dict:
    result = evaluate_predictions(space, labels, probs, thresholds=thresholds or None, n_boot=200)
    out = {k: result.get(k) for k in (*FOLD_KEYS, "auroc_ci") if k in result}
    # Per finding (multi-label) or class (multi-class): a mean over sources hides which output carries over.
    per = result.get("per_label") or result.get("per_class") or {}
    out["auroc_by_output"] = {
        name: {"auroc": m.get("auroc"), "n_positive": m.get("n_positive", m.get("support"))} for name, m in per.items()
    }
    return out


def _mean_auroc(per_source: dict[str, dict]) -> float | None:
    values = [headline_auroc(m) for m in per_source.values()]
    values = [v for v in values if v == v]  # NaN: a source with one class has no AUROC
    return round(float(np.mean(values)), 4) if values else None


def _final_fit(
    recipe: Recipe, table: CxrTable, summary: dict[str, Any], progress: bool, resume: bool = False
) -> dict[str, Any]:
    """One model on every source, for the folds' median best epoch count, with their pooled thresholds."""
    best = [m["best_epoch"] for m in summary["per_source"].values() if m.get("best_epoch") is not None]
    epochs = max(1, round(float(np.median(best))) + 1) if best else recipe.train.epochs
    final = recipe.model_copy(update={"train": recipe.train.model_copy(update={"epochs": epochs})})
    everything = table.subset(np.ones(len(table), dtype=bool))
    everything.frame["split"] = "train"
    rng = np.random.default_rng(recipe.data.seed)
    check_rows = table.subset(np.sort(rng.permutation(len(table))[: min(len(table), 512)]))
    per_source = {
        src: {k: m.get(k) for k in FOLD_KEYS if m.get(k) is not None} for src, m in summary["per_source"].items()
    }
    fixed = FixedOutcome(
        thresholds=summary["thresholds"],  # a list, or a multiclass {operating class: t}
        metrics={
            "validation": summary["pooled"],  # out-of-source: each image scored by a model that never saw its source
            "leave_source_out": {
                "mean_auroc_over_sources": summary["mean_auroc_over_sources"],
                "per_source": per_source,
            },
        },
        check_rows=check_rows,
        extra={
            "validation": "leave-one-source-out",
            "loso": {"folds": list(summary["per_source"]), "final_epochs": epochs, "report": "loso.json"},
        },
    )
    log.info("final fit on all %d images for %d epoch(s) (median best epoch of the folds)", len(table), epochs)
    L.seed_everything(recipe.train.seed, workers=True, verbose=False)
    result, _ = fit_table(final, everything, resume=resume, progress=progress, fixed=fixed)
    return result


def loso_markdown(summary: dict[str, Any]) -> str:
    """A per-source table (what ``<out>/loso.md`` holds)."""
    lines = [
        f"# {summary['name']}: leave-one-source-out validation\n",
        f"Thresholds {summary['thresholds']} ({summary['threshold_method']}), chosen on the pooled out-of-source "
        f"predictions. Mean AUROC over held-out sources: {summary['mean_auroc_over_sources']}.\n",
        "| held-out source | n | train n | AUROC | accuracy | sensitivity | specificity | best epoch |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for src, m in summary["per_source"].items():
        auroc = headline_auroc(m)
        cells = [
            src,
            m.get("n"),
            m.get("n_train"),
            None if auroc != auroc else round(auroc, 3),
            *(None if m.get(k) is None else round(m[k], 3) for k in ("accuracy", "sensitivity", "specificity")),
            m.get("best_epoch"),
        ]
        lines.append("| " + " | ".join("-" if c is None else str(c) for c in cells) + " |")
    pooled = summary["pooled"]
    lines.append(f"\nPooled out-of-source: n {pooled.get('n')}, AUROC {headline_auroc(pooled):.3f}.")
    lines += _by_output_markdown(summary["per_source"])
    return "\n".join(lines) + "\n"


def _by_output_markdown(per_source: dict[str, dict]) -> list[str]:
    """AUROC per output (rows) and held-out source (columns), with the source's positives in brackets."""
    sources = [s for s, m in per_source.items() if m.get("auroc_by_output")]
    if not sources:
        return []
    outputs = list(per_source[sources[0]]["auroc_by_output"])
    lines = ["", "| output | " + " | ".join(sources) + " |", "|---" * (len(sources) + 1) + "|"]
    for name in outputs:
        cells = []
        for src in sources:
            m = per_source[src]["auroc_by_output"].get(name) or {}
            auroc = m.get("auroc")
            cells.append("-" if auroc is None else f"{auroc:.3f} ({m.get('n_positive')})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def read_loso(out: str | Path) -> dict[str, Any]:
    """The ``loso.json`` of a run folder."""
    return json.loads((Path(out) / "loso.json").read_text())
