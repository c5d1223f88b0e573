"""The shortcut audit: does a model read the lungs, or the hospital, the markers and the border?

Six checks (``cxr audit``): a probe of the embeddings for source/sex/age/view, confounding of source and
label, per-source metrics, occlusion of the lungs / of everything else, Grad-CAM energy in the lungs, and
a border test. Lung masks come from any provider ``images -> masks`` (``resolve_lung_masks``).
"""

from cxrkit.audit.masks import LungMasks, MaskProvider, blank, border_region, prior_lung_masks, resolve_lung_masks
from cxrkit.audit.record import card_summary, record_audit
from cxrkit.audit.report import write_audit_report
from cxrkit.audit.run import AuditOptions, AuditResult, audit_table, run_audit

__all__ = [
    "AuditOptions",
    "AuditResult",
    "LungMasks",
    "MaskProvider",
    "audit_table",
    "blank",
    "border_region",
    "card_summary",
    "prior_lung_masks",
    "record_audit",
    "resolve_lung_masks",
    "run_audit",
    "write_audit_report",
]
