"""Plots and reports are written, as real PNGs, and text is escaped."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cxrkit.core.errors import DataFormatError
from cxrkit.core.task import LabelSpace, TaskType
from cxrkit.evaluation import (
    confusion_matrix_plot,
    evaluate_predictions,
    learning_curve_plot,
    reliability_plot,
    roc_curve_plot,
    write_report,
)

from ._data import multiclass_data, multilabel_data, noisy_binary

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path) -> bool:
    data = path.read_bytes()
    return data.startswith(PNG_MAGIC) and len(data) > 5000


def _leftovers(directory) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]


def test_single_plots(tmp_path, binary_space):
    y, p = noisy_binary(80)
    labels = np.stack([1 - y, y], axis=1)
    out = roc_curve_plot(binary_space, labels, p, tmp_path / "sub" / "roc.png", result={"auroc_ci": [0.7, 0.9]})
    assert _is_png(out)
    assert _is_png(reliability_plot(binary_space, labels, p, tmp_path / "rel.png"))
    assert _is_png(confusion_matrix_plot([[5, 1], [2, 7]], ["normal", "pneumonia"], tmp_path / "cm.png"))
    assert _leftovers(tmp_path) == [] and _leftovers(tmp_path / "sub") == []
    with pytest.raises(DataFormatError, match="2 x 2"):
        confusion_matrix_plot([[1, 2, 3]], ["a", "b"], tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_learning_curve_tolerates_lightning_rows_and_missing_columns(tmp_path):
    # Lightning's CSV logger: train and validation values of one epoch on separate rows
    df = pd.DataFrame(
        {
            "epoch": [0, 0, 1, 1, 2, 2],
            "train_loss": [1.0, np.nan, 0.7, np.nan, 0.5, np.nan],
            "val_loss": [np.nan, 0.9, np.nan, 0.6, np.nan, 0.65],
            "val_acc": [np.nan, 0.6, np.nan, 0.7, np.nan, 0.72],
        }
    )
    csv = tmp_path / "metrics.csv"
    df.to_csv(csv, index=False)
    assert _is_png(learning_curve_plot(csv, tmp_path / "lc.png"))
    assert _is_png(learning_curve_plot(df[["epoch", "val_loss"]], tmp_path / "lc2.png", best_epoch=1))
    with pytest.raises(DataFormatError, match="No metric to plot"):
        learning_curve_plot(pd.DataFrame({"epoch": [0, 1], "lr": [0.1, 0.1]}), tmp_path / "lc3.png")
    with pytest.raises(DataFormatError, match="epoch"):
        learning_curve_plot(pd.DataFrame({"val_loss": [0.1]}), tmp_path / "lc4.png")


@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel"])
def test_write_report(tmp_path, task):
    if task == "binary":
        space = LabelSpace(TaskType.BINARY, ("normal", "pneumonia"))
        y, p = noisy_binary(80)
        labels = np.stack([1 - y, y], axis=1)
        expected = {"roc", "pr", "reliability", "confusion", "accuracy_threshold"}
    elif task == "multiclass":
        space = LabelSpace(TaskType.MULTICLASS, ("normal", "bacterial", "<b>viral</b>"))
        labels, p = multiclass_data(60)
        expected = {"roc", "pr", "reliability", "confusion"}
    else:
        space = LabelSpace(TaskType.MULTILABEL, ("effusion", "nodule|mass", "<b>edema</b>"))
        labels, p = multilabel_data(60)
        expected = {"roc", "pr", "reliability", "accuracy_threshold"}
    result = evaluate_predictions(space, labels, p, n_boot=50)
    title = "<script>alert('x')</script> & test"
    written = write_report(result, tmp_path / "rep", labels, p, space, title=title)
    assert expected <= written.keys()
    for name in expected:
        assert _is_png(written[name]), name
    assert json.loads((tmp_path / "rep" / "metrics.json").read_text()) == result
    page = (tmp_path / "rep" / "report.html").read_text()
    assert "<script>" not in page and "&lt;script&gt;" in page and "&amp; test" in page
    assert "data:image/png;base64," in page
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "](roc.png)" in md
    if task != "binary":
        name = "viral" if task == "multiclass" else "edema"
        assert f"<b>{name}" not in page and f"&lt;b&gt;{name}&lt;/b&gt;" in page
    if task == "multilabel":
        assert "nodule\\|mass" in md  # a pipe in a class name must not split the table cell
    assert _leftovers(tmp_path / "rep") == []


def test_report_without_plots_writes_the_numbers_only(tmp_path, binary_space):
    y, p = noisy_binary(40)
    labels = np.stack([1 - y, y], axis=1)
    result = evaluate_predictions(binary_space, labels, p, n_boot=0)
    written = write_report(result, tmp_path / "rep", labels, p, binary_space, plots=False)
    assert set(written) == {"metrics_json", "report_md", "report_html"}
    assert not list((tmp_path / "rep").glob("*.png"))
    assert "| auroc |" in (tmp_path / "rep" / "report.md").read_text()
    assert "data:image/png" not in (tmp_path / "rep" / "report.html").read_text()


def test_report_rejects_mismatched_task(tmp_path, binary_space, multilabel_space):
    y, p = multilabel_data(30)
    result = evaluate_predictions(multilabel_space, y, p, n_boot=0)
    with pytest.raises(DataFormatError, match="multilabel"):
        write_report(result, tmp_path, y, p, binary_space)


def test_reliability_gap_does_not_cover_the_bars_and_is_in_the_legend(binary_space, monkeypatch, tmp_path):
    """Issue 12, item 14: the gap overlay must leave the observed bars visible and have a legend entry."""
    from matplotlib.colors import to_rgb

    from cxrkit.evaluation import plots

    figs = []
    monkeypatch.setattr(plots, "_save", lambda fig, out: figs.append(fig) or Path(out))
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 400)
    y = (rng.uniform(0, 1, 400) < 0.5 + 0.6 * (p - 0.5)).astype(float)
    plots.reliability_plot(binary_space, np.stack([1 - y, y], 1), p[:, None], tmp_path / "rel.png")
    ax = figs[0].axes[0]
    fills = {tuple(round(c, 3) for c in to_rgb(r.get_facecolor())) for r in ax.patches}
    assert fills == {tuple(round(c, 3) for c in to_rgb("tab:blue"))}  # only the observed bars are filled
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "Mean confidence" in labels and any("Gap" in t for t in labels)
