"""Dataset pictures: class-count bar plot and a labelled sample grid (PNG, written atomically)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: never needs a display
import matplotlib.pyplot as plt
import numpy as np

from cxrkit.core.files import atomic_path
from cxrkit.data.images import load_image
from cxrkit.data.splits import split_counts
from cxrkit.data.table import CxrTable


def _save(fig, out: Path) -> Path:
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out


def class_count_plot(table: CxrTable, out: str | Path, title: str = "Images per class") -> Path:
    """Horizontal stacked bars: images per class, split by train/val/test where the table has splits."""
    counts = split_counts(table)
    classes = list(table.classes)
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(classes) + 1.6))
    left = np.zeros(len(classes))
    colours = {"train": "#4C72B0", "val": "#DD8452", "test": "#55A868", "(none)": "#8172B3"}
    for split, per_class in counts.items():
        values = np.array([per_class.get(c, 0) for c in classes], dtype=float)
        ax.barh(classes, values, left=left, label=split, color=colours.get(split))
        left += values
    for y, total in enumerate(left):
        ax.text(total, y, f" {int(total):,}", va="center", fontsize=9)
    ax.set_xlabel("images")
    ax.set_title(title)
    ax.invert_yaxis()
    ax.set_xlim(0, max(left.max(), 1) * 1.15)
    if len(counts) > 1 or "(none)" not in counts:
        ax.legend(loc="lower right", fontsize=8)
    return _save(fig, Path(out))


def sample_grid(table: CxrTable, out: str | Path, per_class: int = 4, seed: int = 0) -> Path:
    """A grid with one row per class (up to 8 classes) of random example images, each titled with its labels."""
    rng = np.random.default_rng(seed)
    classes = list(table.classes)[:8] or ["(unlabelled)"]
    fig, axes = plt.subplots(len(classes), per_class, figsize=(2.2 * per_class, 2.4 * len(classes)), squeeze=False)
    for r, cls in enumerate(classes):
        rows = np.flatnonzero(table.labels[:, r] == 1) if table.classes else np.arange(len(table))
        picks = rng.choice(rows, size=min(per_class, len(rows)), replace=False) if len(rows) else []
        for c in range(per_class):
            ax = axes[r][c]
            ax.axis("off")
            if c >= len(picks):
                continue
            i = int(picks[c])
            ax.imshow(load_image(table.frame["path"].iat[i]), cmap="gray", vmin=0, vmax=1)
            found = [n for j, n in enumerate(table.classes) if table.labels[i, j] == 1] or ["no label"]
            pid = table.frame["patient_id"].iat[i]
            ax.set_title(f"{', '.join(found)}\n{pid if isinstance(pid, str) else ''}", fontsize=7)
        axes[r][0].text(-0.08, 0.5, cls, transform=axes[r][0].transAxes, rotation=90, va="center", ha="right")
    fig.suptitle(f"Sample images ({len(table):,} in the dataset)", fontsize=10)
    return _save(fig, Path(out))
