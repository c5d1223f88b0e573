"""Point a bundle's split record back at the original images, after training on payload copies.

A GPU run trains on re-encoded copies (recipes/gpu_payload.py), so the bundle's ``images.npz`` holds the copies'
content and pixel hashes: the split could not be rebuilt from the published files, and `cxr evaluate` would
miss exact copies of training images. This maps each recorded copy to its original (ORIGINS, written by
gpu_payload.py) and records the originals' hashes instead, in the same order; config and card are rewritten.

    .venv/bin/python recipes/restore_split_record.py BUNDLE --payload .gpu/data --origins runs/gpu_origins.csv \
        [--sources ../shared/data/kaggle-pneumonia/train]

--sources also puts the published data back into the recorded recipe (``extra.recipe.data.sources`` and
``data_summary.sources``), so that `cxr threshold` and the split checks rebuild the split from it.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from cxrkit.core.errors import DataFormatError
from cxrkit.core.task import LabelSpace, TaskType
from cxrkit.data.fingerprint import content_hashes, split_record
from cxrkit.data.table import CxrTable
from cxrkit.models.records import (
    CONFIG_FILE,
    IMAGES_FILE,
    images_config,
    read_split_record,
    rewrite_bundle,
    write_split_record,
)


def _paths_table(paths: list[str]) -> CxrTable:
    return CxrTable(pd.DataFrame({"path": paths}), np.zeros((len(paths), 1)), LabelSpace(TaskType.MULTILABEL, ("x",)))


def originals(record: dict[str, np.ndarray], payload: Path, origins: pd.DataFrame) -> dict[str, list[str]]:
    """Per split, the original file of each recorded copy (matched by content hash)."""
    copies = content_hashes(_paths_table([str(payload / img) for img in origins["image"]]))
    by_hash = {bytes(h): orig for h, orig in zip(copies, origins["original"], strict=True)}
    out = {}
    for split in ("train", "val"):
        keys = [bytes(r) for r in record[f"{split}_content"]]
        missing = sum(k not in by_hash for k in keys)
        if missing:
            raise DataFormatError(f"{missing} {split} image(s) of the bundle are not payload copies; nothing changed.")
        out[split] = [by_hash[k] for k in keys]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--payload", type=Path, default=None, help="the payload's data folder (img/ unzipped)")
    ap.add_argument("--origins", type=Path, default=Path("runs/gpu_origins.csv"))
    ap.add_argument("--sources", nargs="*", default=None, help="the recipe's published data.sources")
    args = ap.parse_args()
    record = read_split_record(args.bundle)
    if record is None:
        raise SystemExit(f"{args.bundle} records no split.")
    config = json.loads((args.bundle / CONFIG_FILE).read_text())
    if args.sources:
        config["data_summary"]["sources"] = config["extra"]["recipe"]["data"]["sources"] = args.sources
    if not len(record["train_content"]) or args.payload is None:  # nothing to map (e.g. an npz copied as is)
        rewrite_bundle(args.bundle, config)
        return
    paths = originals(record, args.payload, pd.read_csv(args.origins))
    new = split_record(_paths_table(paths["train"]), _paths_table(paths["val"]))
    config["images"] = images_config(new)
    with tempfile.TemporaryDirectory() as tmp:
        write_split_record(Path(tmp), new)
        rewrite_bundle(args.bundle, config, files={IMAGES_FILE: Path(tmp) / IMAGES_FILE})
    print(f"{args.bundle}: {len(paths['train'])} train, {len(paths['val'])} val images mapped to their originals")


if __name__ == "__main__":
    main()
