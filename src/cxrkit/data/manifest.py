"""Write a table as a manifest CSV that every cxrkit command accepts in place of a dataset path."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cxrkit.core.files import atomic_path
from cxrkit.data.adapters.csv_generic import LABEL_PREFIX
from cxrkit.data.table import CxrTable


def write_manifest(table: CxrTable, out: str | Path) -> Path:
    """Write ``table`` (paths absolute, labels as ``label:<class>`` columns of 1/0/blank) atomically."""
    out = Path(out)
    labels = pd.DataFrame(table.labels, columns=[f"{LABEL_PREFIX}{c}" for c in table.classes])
    labels = labels.astype("Float32")  # keeps NaN as a blank cell
    frame = pd.concat([table.frame.reset_index(drop=True), labels], axis=1)
    with atomic_path(out) as tmp:
        frame.to_csv(tmp, index=False)
    return out
