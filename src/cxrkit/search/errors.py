"""Errors of the similar-case index (subclasses of CxrkitError, so the CLI prints them cleanly)."""

from __future__ import annotations

from cxrkit.core.errors import CxrkitError


class IndexFormatError(CxrkitError):
    """An index folder is missing, incomplete or inconsistent (files missing, counts that disagree)."""


class ModelMismatchError(CxrkitError):
    """Embeddings of one model were compared with an index built from another model's embeddings."""
