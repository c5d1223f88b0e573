"""A picture grid of a query and its most similar cases (query first, each tile titled)."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from cxrkit.core.errors import CxrkitError
from cxrkit.core.files import atomic_path
from cxrkit.data.images import load_image

log = logging.getLogger(__name__)


def _thumb(path: str) -> np.ndarray | None:
    try:
        return load_image(path)
    except (CxrkitError, OSError) as err:
        log.warning("Cannot show %s in the grid: %s", path, err)
        return None


def _short(text: str, n: int = 26) -> str:
    return text if len(text) <= n else text[: n - 1] + "\u2026"


def similar_cases_grid(result: dict[str, Any], out_png: str | Path, cols: int = 6, rows: int = 6) -> Path:
    """Write a ``rows`` x ``cols`` grid: the query image, then its neighbours in rank order.

    Each neighbour tile is titled with its rank, labels, similarity and patient.

    Args:
        result: one item of ``query_index`` (``query`` and ``neighbours``).
        out_png: the PNG to write (atomically).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    hits = result["neighbours"][: rows * cols - 1]
    n_tiles = 1 + len(hits)
    rows = max(1, min(rows, math.ceil(n_tiles / cols)))
    fig = Figure(figsize=(cols * 2.0, rows * 2.25))
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    tiles = [(result["query"], "QUERY\n" + _short(Path(result["query"]).name), "#c0392b")]
    for h in hits:
        labels = ", ".join(h["labels"]) or "unlabelled"
        patient = f" pt {h['patient_id']}" if h.get("patient_id") else ""
        tiles.append(
            (h["path"], f"#{h['rank']} {_short(labels, 18)}\nsim {h['similarity']:.3f}{_short(patient, 20)}", "k")
        )
    for ax, (path, title, color) in zip(axes, tiles, strict=False):
        img = _thumb(str(path))
        if img is not None:
            ax.imshow(img, cmap="gray", vmin=0.0, vmax=1.0, interpolation="lanczos")
        ax.set_title(title, fontsize=7.5, color=color)
        ax.set_xticks([])
        ax.set_yticks([])
        if color != "k":
            for spine in ax.spines.values():
                spine.set_edgecolor(color)
                spine.set_linewidth(2.5)
    for ax in axes[len(tiles) :]:
        ax.axis("off")
    fig.tight_layout(pad=0.4, h_pad=0.6, w_pad=0.3)
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return out_png
