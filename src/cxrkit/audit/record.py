"""Store an audit's summary in a bundle, so that its MODEL_CARD.md gets a "Shortcut audit" section."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from cxrkit.audit.run import AuditResult
from cxrkit.core.errors import BundleError
from cxrkit.core.files import atomic_dir, sha256_file
from cxrkit.models.bundle import CARD_FILE, CONFIG_FILE, WEIGHTS_FILE, resolve_bundle
from cxrkit.models.card import render_model_card
from cxrkit.models.card_audit import AUDIT_KEY


def card_summary(result: AuditResult | dict[str, Any]) -> dict[str, Any]:
    """The compact part of an audit a model card shows: data, AUROCs, each check's status and verdict, targets."""
    s = result.summary if isinstance(result, AuditResult) else result
    data = s.get("data") or {}
    return {
        "created": s.get("created"),
        "data": {
            k: data.get(k) for k in ("datasets", "n_images", "sources", "class_counts", "seen_in_training") if k in data
        },
        "lung_masks": (s.get("lung_masks") or {}).get("name"),
        "auroc": s.get("auroc"),
        "checks": {
            k: {"status": c.get("status"), "verdict": c.get("verdict")} for k, c in (s.get("checks") or {}).items()
        },
        "targets": s.get("targets"),
    }


def record_audit(bundle: str | Path, result: AuditResult | dict[str, Any]) -> Path:
    """Write ``card_summary(result)`` into the bundle's ``config.json`` and regenerate its card (weights untouched).

    Raises:
        BundleError: the audit was run on a different model (its weights' sha256 differs).
    """
    path = resolve_bundle(bundle)
    summary = result.summary if isinstance(result, AuditResult) else result
    digest = sha256_file(path / WEIGHTS_FILE)
    audited = (summary.get("model") or {}).get("sha256")
    if audited and audited != digest:
        raise BundleError(
            f"This audit is of weights {audited[:12]}..., but {path} holds {digest[:12]}...: "
            "Fix: re-run `cxr audit` on this bundle before recording it."
        )
    config = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
    config.setdefault("extra", {})[AUDIT_KEY] = card_summary(summary)
    text = json.dumps(config, indent=2)
    # The weights are copied byte for byte: the bundle's identity (sha256) stays the same.
    with atomic_dir(path) as tmp:
        shutil.copyfile(path / WEIGHTS_FILE, tmp / WEIGHTS_FILE)
        for extra in path.iterdir():
            if extra.is_file() and extra.name not in (WEIGHTS_FILE, CONFIG_FILE, CARD_FILE):
                shutil.copy2(extra, tmp / extra.name)
        (tmp / CONFIG_FILE).write_text(text + "\n", encoding="utf-8")
        (tmp / CARD_FILE).write_text(render_model_card(config), encoding="utf-8")
    return path
