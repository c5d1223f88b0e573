"""Evaluation plots written as PNG files, atomically.

Figures are built with the object API (``matplotlib.figure.Figure`` on an explicit Agg canvas) rather than
``pyplot``: this renders with Agg without calling ``matplotlib.use`` (which would switch the backend of a
notebook that merely imports cxrkit) and keeps no global figure state, so it is safe in a threaded web server.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import precision_recall_curve, roc_curve

from cxrkit.core.errors import DataFormatError
from cxrkit.core.files import atomic_path
from cxrkit.core.task import LabelSpace, TaskType
from cxrkit.evaluation.arrays import check_pair
from cxrkit.evaluation.calibration import DEFAULT_BINS, calibration_report
from cxrkit.evaluation.metrics import accuracy_vs_threshold, auprc, auroc

logger = logging.getLogger(__name__)

_DPI = 110
# Beyond this many classes the cells of a confusion matrix are too small to hold numbers.
_MAX_ANNOTATED = 20


def _figure(ncols: int = 1, width: float = 5.5, height: float = 4.5) -> tuple[Figure, Any]:
    fig = Figure(figsize=(width * ncols, height))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, axes


def _save(fig: Figure, out_png: str | Path) -> Path:
    out_png = Path(out_png)
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=_DPI)
    logger.debug("Wrote %s", out_png)
    return out_png


def _series(label_space: LabelSpace, y_true: Any, probs: Any) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, y, p) per curve: the positive class (binary), one-vs-rest per class, or per known label."""
    y, p = check_pair(label_space, y_true, probs)
    if label_space.task is TaskType.BINARY:
        known = ~np.isnan(y)
        return [(label_space.classes[1], y[known], p[known])]
    if label_space.task is TaskType.MULTICLASS:
        return [(c, (y == i).astype(float), p[:, i]) for i, c in enumerate(label_space.classes)]
    out = []
    for j, c in enumerate(label_space.classes):
        known = ~np.isnan(y[:, j])
        out.append((c, y[known, j], p[known, j]))
    return out


def _ci(result: Mapping[str, Any] | None, name: str, key: str) -> list[float] | None:
    if not result:
        return None
    for group in ("per_class", "per_label"):
        if group in result and name in result[group]:
            return result[group][name].get(key)
    return result.get(key)


def _label(name: str, metric: str, value: float | None, ci: list[float] | None) -> str:
    text = f"{name}: {metric} {value:.3f}" if value is not None else f"{name}: {metric} n/a"
    if ci and ci[0] is not None:
        text += f" [{ci[0]:.3f}, {ci[1]:.3f}]"
    return text


def _legend(ax: Any, n: int) -> None:
    ax.legend(
        loc="lower right" if n <= 8 else "center left",
        fontsize=8 if n <= 8 else 6,
        bbox_to_anchor=None if n <= 8 else (1.01, 0.5),
    )


def roc_curve_plot(
    label_space: LabelSpace,
    y_true: Any,
    probs: Any,
    out_png: str | Path,
    result: Mapping[str, Any] | None = None,
    title: str = "ROC curve",
) -> Path:
    """ROC curve(s) with AUROC (and its CI when ``result`` from ``evaluate_predictions`` is given) in the legend.

    One curve for binary, one-vs-rest per class for multiclass, one per label (NaN masked) for multilabel;
    labels with a single class present are listed as "n/a" without a curve.
    """
    series = _series(label_space, y_true, probs)
    fig, (ax,) = _figure()
    for name, y, p in series:
        if y.size == 0 or y.min() == y.max():
            ax.plot([], [], label=f"{name}: AUROC n/a (one class)")
            continue
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, lw=1.5, label=_label(name, "AUROC", auroc(y, p), _ci(result, name, "auroc_ci")))
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1)
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1.01),
        xlabel="1 - specificity (false-positive rate)",
        ylabel="Sensitivity (true-positive rate)",
        title=title,
    )
    _legend(ax, len(series))
    return _save(fig, out_png)


def pr_curve_plot(
    label_space: LabelSpace,
    y_true: Any,
    probs: Any,
    out_png: str | Path,
    result: Mapping[str, Any] | None = None,
    title: str = "Precision-recall curve",
) -> Path:
    """Precision-recall curve(s) with AUPRC (average precision) in the legend; prevalence as a dotted baseline."""
    series = _series(label_space, y_true, probs)
    fig, (ax,) = _figure()
    for name, y, p in series:
        if y.size == 0 or y.sum() == 0:
            ax.plot([], [], label=f"{name}: AUPRC n/a (no positive)")
            continue
        prec, rec, _ = precision_recall_curve(y, p)
        (line,) = ax.plot(
            rec,
            prec,
            lw=1.5,
            drawstyle="steps-post",
            label=_label(name, "AUPRC", auprc(y, p), _ci(result, name, "auprc_ci")),
        )
        if len(series) == 1:
            ax.axhline(float(y.mean()), ls=":", color=line.get_color(), lw=1)
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="Recall (sensitivity)", ylabel="Precision (PPV)", title=title)
    _legend(ax, len(series))
    return _save(fig, out_png)


def confusion_matrix_plot(
    matrix: Any, classes: Sequence[str], out_png: str | Path, title: str = "Confusion matrix"
) -> Path:
    """Counts and row-normalised confusion matrix side by side (rows true class, columns predicted)."""
    cm = np.asarray(matrix, dtype=np.float64)
    k = len(classes)
    if cm.shape != (k, k):
        raise DataFormatError(f"confusion matrix must be {k} x {k} for classes {list(classes)}, got {cm.shape}.")
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    side = max(4.5, 0.55 * k + 2)
    fig, axes = _figure(2, width=side, height=side * 0.85)
    for ax, data, sub, fmt in ((axes[0], cm, "counts", "{:.0f}"), (axes[1], norm, "row-normalised", "{:.2f}")):
        im = ax.imshow(data, cmap="Blues", vmin=0, vmax=max(float(data.max()), 1e-9) if sub == "counts" else 1)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        ax.set_xticks(range(k), labels=list(classes), rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(k), labels=list(classes), fontsize=8)
        ax.set(xlabel="Predicted", ylabel="True", title=f"{title} ({sub})")
        if k <= _MAX_ANNOTATED:
            cut = data.max() / 2 if data.max() else 0.5
            for i in range(k):
                for j in range(k):
                    ax.text(
                        j,
                        i,
                        fmt.format(data[i, j]),
                        ha="center",
                        va="center",
                        fontsize=8,
                        color="white" if data[i, j] > cut else "black",
                    )
    return _save(fig, out_png)


def reliability_plot(
    label_space: LabelSpace,
    y_true: Any,
    probs: Any,
    out_png: str | Path,
    n_bins: int = DEFAULT_BINS,
    title: str = "Reliability diagram",
) -> Path:
    """Reliability diagram: per-bin accuracy vs mean confidence, the diagonal, ECE, and a histogram of counts."""
    cal = calibration_report(label_space, y_true, probs, n_bins=n_bins)
    edges = np.asarray(cal["bin_edges"])
    centers = (edges[:-1] + edges[1:]) / 2
    width = edges[1] - edges[0]
    acc = np.array([np.nan if v is None else v for v in cal["bin_accuracy"]], dtype=float)
    conf = np.array([np.nan if v is None else v for v in cal["bin_confidence"]], dtype=float)
    fig = Figure(figsize=(5.5, 6))
    FigureCanvasAgg(fig)
    ax, hist = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.bar(centers, np.nan_to_num(acc), width=width * 0.95, color="tab:blue", alpha=0.75, label="Observed")
    # The gap is drawn as lines (mean confidence per bin, joined to the bar top), never as a filled
    # overlay: a translucent red box over the bar hid it wherever confidence was below the observed rate.
    has = np.isfinite(acc) & np.isfinite(conf)
    ax.hlines(conf[has], centers[has] - width * 0.42, centers[has] + width * 0.42, color="tab:red", lw=2,
              label="Mean confidence")  # fmt: skip
    ax.vlines(centers[has], acc[has], conf[has], color="tab:red", lw=1.2, ls=":", label="Gap (miscalibration)")
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="Perfect calibration")
    ece = cal["ece"]
    ax.set(ylim=(0, 1), ylabel="Observed frequency", title=f"{title} (ECE {ece:.3f})" if ece is not None else title)
    ax.legend(loc="upper left", fontsize=8)
    hist.bar(centers, cal["bin_count"], width=width * 0.95, color="grey")
    xlabel = {
        TaskType.BINARY: f"Predicted P({label_space.classes[1]})",
        TaskType.MULTICLASS: "Top-class confidence",
        TaskType.MULTILABEL: "Predicted probability (all known labels)",
    }[label_space.task]
    hist.set(xlim=(0, 1), xlabel=xlabel, ylabel="Count")
    return _save(fig, out_png)


def accuracy_threshold_plot(
    label_space: LabelSpace,
    y_true: Any,
    probs: Any,
    out_png: str | Path,
    thresholds: Sequence[float] | None = None,
    title: str = "Accuracy vs threshold",
) -> Path:
    """Accuracy of ``p >= t`` against ``t`` (binary; multilabel: per label and over all known entries).

    Chosen ``thresholds`` (one per curve) are marked with dots when given.
    """
    if label_space.task is TaskType.MULTICLASS:
        raise DataFormatError("accuracy_threshold_plot is for binary and multilabel tasks; multiclass uses argmax.")
    grid = np.linspace(0.0, 1.0, 101)
    series = _series(label_space, y_true, probs)
    fig, (ax,) = _figure()
    multilabel = label_space.task is TaskType.MULTILABEL
    for j, (name, y, p) in enumerate(series):
        curve = accuracy_vs_threshold(y, p, grid)
        acc = np.array([np.nan if v is None else v for v in curve["accuracy"]], dtype=float)
        (line,) = ax.plot(grid, acc, lw=1 if multilabel else 1.8, alpha=0.6 if multilabel else 1, label=name)
        if thresholds is not None and j < len(thresholds) and y.size:
            t = float(thresholds[j])
            ax.plot([t], [float(((p >= t) == (y > 0.5)).mean())], "o", color=line.get_color())
    if multilabel:
        y, p = check_pair(label_space, y_true, probs)
        overall = accuracy_vs_threshold(y, p, grid)["accuracy"]
        ax.plot(grid, [np.nan if v is None else v for v in overall], color="black", lw=2.2, label="all labels")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="Threshold (positive when p >= t)", ylabel="Accuracy", title=title)
    _legend(ax, len(series) + int(multilabel))
    return _save(fig, out_png)


_LC_ALIASES = {c: (c, f"{c}_epoch") for c in ("train_loss", "val_loss", "train_acc", "val_acc", "val_auroc")}


def _load_metrics(metrics: Any) -> pd.DataFrame:
    if isinstance(metrics, pd.DataFrame):
        df = metrics.copy()
    elif isinstance(metrics, str | Path):
        path = Path(metrics)
        if not path.is_file():
            raise DataFormatError(f"Metrics file {str(path)!r} does not exist; pass the metrics.csv a run wrote.")
        df = pd.read_csv(path)
    else:
        df = pd.DataFrame(metrics)
    if "epoch" not in df.columns:
        raise DataFormatError(f"Metrics need an 'epoch' column; found {sorted(map(str, df.columns))}.")
    for canon, names in _LC_ALIASES.items():
        if canon not in df.columns:
            for alt in names[1:]:
                if alt in df.columns:
                    df[canon] = df[alt]
    # Lightning's CSV logger writes train and validation values of one epoch on separate rows.
    return df.groupby("epoch", sort=True).last().reset_index()


def learning_curve_plot(metrics: Any, out_png: str | Path, best_epoch: int | None = None) -> Path:
    """Loss and accuracy per epoch, train vs validation, with the best epoch marked.

    Args:
        metrics: a ``metrics.csv`` path, a DataFrame, or records with an ``epoch`` column and any of
            ``train_loss``, ``val_loss``, ``train_acc``, ``val_acc``, ``val_auroc`` (Lightning's ``*_epoch``
            names are accepted). Missing columns are skipped; rows of one epoch are merged.
        out_png: where to write the PNG.
        best_epoch: epoch to mark; None marks the epoch of lowest ``val_loss`` when that column exists.

    Raises:
        DataFormatError: no ``epoch`` column, or none of the metric columns.
    """
    df = _load_metrics(metrics)
    panels = [("Loss", ("train_loss", "val_loss")), ("Accuracy", ("train_acc", "val_acc")), ("AUROC", ("val_auroc",))]
    panels = [(t, [c for c in cols if c in df.columns and df[c].notna().any()]) for t, cols in panels]
    panels = [(t, cols) for t, cols in panels if cols]
    if not panels:
        raise DataFormatError(
            "No metric to plot: expected any of train_loss, val_loss, train_acc, val_acc, val_auroc; "
            f"found {sorted(map(str, df.columns))}."
        )
    if best_epoch is None and "val_loss" in df.columns and df["val_loss"].notna().any():
        best_epoch = int(df.loc[df["val_loss"].idxmin(), "epoch"])
    fig, axes = _figure(len(panels), width=5, height=4)
    for ax, (name, cols) in zip(axes, panels, strict=True):
        for col in cols:
            d = df[["epoch", col]].dropna()
            ax.plot(
                d["epoch"],
                d[col],
                marker="o",
                ms=3,
                ls="-" if col.startswith("val") else "--",
                label=col.replace("_", " "),
            )
        if best_epoch is not None:
            ax.axvline(best_epoch, color="tab:red", ls=":", lw=1.2, label=f"best epoch {best_epoch}")
        ax.set(xlabel="Epoch", ylabel=name, title=name)
        ax.legend(fontsize=8)
    return _save(fig, out_png)


def plot_all(
    result: Mapping[str, Any], out_dir: str | Path, y_true: Any, probs: Any, label_space: LabelSpace
) -> dict[str, Path]:
    """Every plot that fits the task, into ``out_dir``; returns {plot name: path}."""
    out_dir = Path(out_dir)
    paths = {
        "roc": roc_curve_plot(label_space, y_true, probs, out_dir / "roc.png", result),
        "pr": pr_curve_plot(label_space, y_true, probs, out_dir / "pr.png", result),
        "reliability": reliability_plot(
            label_space,
            y_true,
            probs,
            out_dir / "reliability.png",
            n_bins=int(result.get("calibration", {}).get("n_bins", DEFAULT_BINS)),
        ),
    }
    if "confusion_matrix" in result:
        classes = result.get("classes", list(label_space.classes))
        paths["confusion"] = confusion_matrix_plot(result["confusion_matrix"], classes, out_dir / "confusion.png")
    if label_space.task is not TaskType.MULTICLASS:
        if label_space.task is TaskType.BINARY:
            ts = [result["threshold"]] if result.get("threshold") is not None else None
        else:
            ts = [result["per_label"][c]["threshold"] for c in label_space.classes] if "per_label" in result else None
        paths["accuracy_threshold"] = accuracy_threshold_plot(
            label_space, y_true, probs, out_dir / "accuracy_threshold.png", thresholds=ts
        )
    return paths
