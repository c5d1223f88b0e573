"""The "Shortcut audit" section of a model card, from the audit summary stored in ``config.json``.

``cxr audit --record`` stores a compact summary under ``extra.shortcut_audit``; the card then shows each
check's verdict, and a warning in its first lines when the model misses the lung-focus targets.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

AUDIT_KEY = "shortcut_audit"
_TITLES = {
    "source_probe": "Source predictability",
    "confounding": "Confounding by source",
    "per_source": "Per-source metrics",
    "occlusion": "Occlusion (lungs / outside)",
    "cam_in_lungs": "Grad-CAM in the lungs",
    "border": "Border test",
}
_MARK = {"ok": "OK", "warn": "warning", "fail": "FAIL", "skipped": "skipped"}


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def audit_warning(audit: Mapping[str, Any] | None) -> list[str]:
    """Lines for the top of the card when the audit found the model misses its lung-focus targets."""
    if not isinstance(audit, Mapping):
        return []
    targets = audit.get("targets") or {}
    if targets.get("all") is not False:
        return []
    missed = [k for k, v in targets.items() if k != "all" and v is False]
    return [
        "> **Warning: this model fails the shortcut audit.** It does not meet "
        + ", ".join(f"`{m}`" for m in missed)
        + ": its outputs are driven (partly) by something other than the lungs, such as the image source, "
        "text markers or the patient's age. See the Shortcut audit section below.",
        "",
    ]


def audit_section(audit: Mapping[str, Any] | None) -> list[str]:
    """The card's "Shortcut audit" section (Markdown lines); a note saying how to run it when none is stored."""
    parts = ["## Shortcut audit\n"]
    if not isinstance(audit, Mapping):
        return [*parts, "_Not run yet._ Run `cxr audit --model <bundle> DATA... --record` to add it.\n"]
    data = audit.get("data") or {}
    sources = ", ".join(f"{k} ({v})" for k, v in (data.get("sources") or {}).items())
    parts.append(
        f"Run {audit.get('created', '?')} on {data.get('n_images', '?')} images from {sources or '?'}; "
        f"lung masks: {audit.get('lung_masks', '?')}."
    )
    seen = data.get("seen_in_training") or {}
    if seen.get("count"):
        parts.append(f"{seen['count']} of these images were in the training/validation data (AUROCs optimistic).")
    auroc = {k: v for k, v in (audit.get("auroc") or {}).items() if v is not None}
    if auroc:
        names = {
            "full": "full image",
            "lungs_blanked": "lungs blanked",
            "outside_blanked": "lungs only",
            "border": "border blanked",
        }
        parts.append("AUROC: " + ", ".join(f"{names.get(k, k)} {v:.3f}" for k, v in auroc.items()) + ".")
    parts += ["", "| Check | Result | Verdict |", "|---|---|---|"]
    for name, check in (audit.get("checks") or {}).items():
        status = _MARK.get(str(check.get("status")), str(check.get("status")))
        parts.append(f"| {_TITLES.get(name, name)} | {status} | {_cell(check.get('verdict', ''))} |")
    targets = audit.get("targets") or {}
    if targets:
        verdict = {True: "meets", False: "does not meet", None: "could not be checked against"}[targets.get("all")]
        parts += [
            "",
            f"The model {verdict} the lung-focus targets: "
            + ", ".join(
                f"`{k}` {'yes' if v else ('no' if v is False else 'n/a')}" for k, v in targets.items() if k != "all"
            )
            + ".",
        ]
    return [*parts, ""]
