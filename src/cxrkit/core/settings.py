"""Where cxrkit keeps its files (CXRKIT_HOME) and other environment settings."""

from __future__ import annotations

import os
from pathlib import Path


def cxrkit_home() -> Path:
    """Root for caches, downloaded weights, the case store and indexes (``$CXRKIT_HOME`` or ~/.cxrkit)."""
    home = Path(os.environ.get("CXRKIT_HOME", Path.home() / ".cxrkit")).expanduser()
    home.mkdir(parents=True, exist_ok=True)
    return home


DEFAULT_MODEL_ENV = "CXRKIT_DEFAULT_MODEL"


def default_model_setting() -> str | None:
    """The model a user declared as the default (``$CXRKIT_DEFAULT_MODEL``: a bundle name or folder), if any."""
    value = os.environ.get(DEFAULT_MODEL_ENV, "").strip()
    return value or None
