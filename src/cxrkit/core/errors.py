"""Exception types. Each message names the bad value, the valid options and the fix."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class CxrkitError(Exception):
    """Base class of every error cxrkit raises on purpose (the CLI prints these without a traceback)."""


class DataFormatError(CxrkitError):
    """A dataset path or table is not in a layout cxrkit understands, or is inconsistent."""


class ImageDecodeError(CxrkitError):
    """An image file cannot be decoded safely (empty, truncated, too large, not an image)."""


class LeakageError(CxrkitError):
    """Patients appear in more than one split."""

    def __init__(self, message: str, patients: list[str]):
        super().__init__(message)
        self.patients = patients


class UnknownNameError(CxrkitError, KeyError):
    """A name (model, class, format, method) is not one of the valid names."""

    def __init__(self, kind: str, name: str, valid: Iterable[str]):
        valid = sorted(valid)
        close = difflib.get_close_matches(name, valid, n=3, cutoff=0.4)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        msg = f"Unknown {kind} {name!r}.{hint} Valid: {', '.join(valid)}."
        super().__init__(msg)
        self.name = name
        self.valid = valid

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0])


class ConfigError(CxrkitError):
    """A recipe, option or setting has a bad value."""


class WeightsUnavailableError(CxrkitError):
    """Pretrained weights are needed but cannot be obtained (offline, missing file)."""


class BundleError(CxrkitError):
    """A model bundle is missing, incomplete or corrupt."""
