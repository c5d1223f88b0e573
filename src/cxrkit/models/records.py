"""What a bundle remembers about images: its exact train/val split, and named evaluations.

- ``images.npz`` (beside ``model.safetensors``): ``train_content`` / ``val_content`` (N x 8 uint8, first 8 bytes
  of each file's sha256: the exact split, rebuilt with ``cxrkit.data.fingerprint.apply_recorded_split``) and
  ``train_dhash`` / ``val_dhash`` (N x 32 uint8 perceptual hashes: ``cxr evaluate`` warns on images the model
  has seen, even re-encoded or resized). About 80 bytes per image; read with ``allow_pickle=False``.
  ``config.json`` key ``images`` describes it (file, counts, hash definitions).
- ``config.json`` key ``evaluations``: ``{name: {data, data_fingerprint, n, metrics, by, overlap_with_training,
  recorded}}`` appended by ``cxr evaluate --record NAME`` and shown in the model card side by side.
"""

from __future__ import annotations

import datetime as _dt
import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from cxrkit.core.errors import BundleError
from cxrkit.core.files import atomic_dir
from cxrkit.data.fingerprint import (
    CONTENT_BYTES,
    DHASH_SIDE,
    NEAR_DUPLICATE_BITS,
    content_hashes,
    near_duplicates,
    pixel_dhashes,
)
from cxrkit.data.table import CxrTable
from cxrkit.models.card import render_model_card

CONFIG_FILE = "config.json"
CARD_FILE = "MODEL_CARD.md"
IMAGES_FILE = "images.npz"
RECORD_KEYS = ("train_content", "val_content", "train_dhash", "val_dhash")


def images_config(record: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """The ``images`` entry of ``config.json`` for a split record."""
    return {
        "file": IMAGES_FILE,
        "n_train": len(record["train_content"]),
        "n_val": len(record["val_content"]),
        "content_hash": f"first {CONTENT_BYTES} bytes of sha256(file bytes; MedMNIST: array row bytes)",
        "pixel_hash": f"{DHASH_SIDE * DHASH_SIDE}-bit difference hash of the decoded image ({DHASH_SIDE}x{DHASH_SIDE + 1} area resize)",
        "near_duplicate_bits": NEAR_DUPLICATE_BITS,
    }


def write_split_record(folder: Path, record: Mapping[str, np.ndarray]) -> None:
    missing = [k for k in RECORD_KEYS if k not in record]
    if missing:
        raise BundleError(f"A split record needs arrays {list(RECORD_KEYS)}; missing {missing}.")
    np.savez_compressed(folder / IMAGES_FILE, **{k: np.asarray(record[k], np.uint8) for k in RECORD_KEYS})


def read_split_record(bundle_path: Path) -> dict[str, np.ndarray] | None:
    """The bundle's recorded split (None for bundles saved before splits were recorded)."""
    path = Path(bundle_path) / IMAGES_FILE
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in RECORD_KEYS}
    except (OSError, ValueError, KeyError) as err:
        raise BundleError(f"{path} is not a readable split record ({err}). Fix: restore it from the bundle.") from err


def rewrite_bundle(
    bundle_path: Path, config: dict[str, Any], dest: Path | None = None, files: Mapping[str, Path | None] | None = None
) -> Path:
    """Write ``config`` (and its regenerated card) into the bundle, atomically; other files copied unchanged.

    ``files``: bundle file names to replace with the given file, or to leave out (None).
    """
    bundle_path = Path(bundle_path)
    dest = Path(dest or bundle_path)
    text = json.dumps(config, indent=2)
    files = dict(files or {})
    with atomic_dir(dest) as tmp:
        for f in bundle_path.iterdir():
            if f.is_file() and f.name not in (CONFIG_FILE, CARD_FILE) and f.name not in files:
                shutil.copyfile(f, tmp / f.name)  # weights byte for byte: the sha256 stays the same
        for name, src in files.items():
            if src is not None:
                shutil.copyfile(src, tmp / name)
        (tmp / CONFIG_FILE).write_text(text + "\n", encoding="utf-8")
        (tmp / CARD_FILE).write_text(render_model_card(config), encoding="utf-8")
    return dest


def record_evaluation(bundle_path: Path, name: str, entry: Mapping[str, Any]) -> dict[str, Any]:
    """Add (or replace) evaluation ``name`` in the bundle's config and regenerate its card."""
    config = json.loads((Path(bundle_path) / CONFIG_FILE).read_text(encoding="utf-8"))
    stamped = {**dict(entry), "recorded": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}
    config["evaluations"] = {**(config.get("evaluations") or {}), name: stamped}
    rewrite_bundle(bundle_path, config)
    return stamped


def seen_mask(bundle: Any, table: CxrTable, content: np.ndarray | None = None) -> np.ndarray | None:
    """Per image of ``table``: was it in the bundle's training or validation data (exact copy or near-duplicate)?

    None when the bundle records no image hashes. ``content``: ``content_hashes(table)`` if already computed.
    """
    record = bundle.split_record()
    if record is None:
        return None
    content = content_hashes(table) if content is None else content
    seen = {bytes(r) for r in np.concatenate([record["train_content"], record["val_content"]])}
    exact = np.array([bytes(r) in seen for r in content], dtype=bool)
    if (~exact).any():
        reference = np.concatenate([record["train_dhash"], record["val_dhash"]])
        exact[~exact] = near_duplicates(pixel_dhashes(table.subset(~exact)), reference)
    return exact


def seen_images(bundle: Any, table: CxrTable, content: np.ndarray) -> dict[str, Any]:
    """How many of ``table``'s images the bundle was trained or validated on (exact copies or near-duplicates)."""
    record = bundle.split_record()
    if record is None:
        return {"checked": False, "reason": "the bundle records no image hashes (saved before cxrkit recorded them)"}
    seen = {bytes(r) for r in np.concatenate([record["train_content"], record["val_content"]])}
    exact = np.array([bytes(r) in seen for r in content], dtype=bool)
    reference = np.concatenate([record["train_dhash"], record["val_dhash"]])
    near = near_duplicates(pixel_dhashes(table.subset(~exact)), reference) if (~exact).any() else np.zeros(0, bool)
    count = int(exact.sum() + near.sum())
    return {
        "checked": True,
        "count": count,
        "fraction": count / max(1, len(table)),
        "exact": int(exact.sum()),
        "near_duplicate": int(near.sum()),
    }
