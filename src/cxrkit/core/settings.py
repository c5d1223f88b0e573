"""Where cxrkit keeps its files (CXRKIT_HOME) and other environment settings."""

from __future__ import annotations

import os
from pathlib import Path


def cxrkit_home() -> Path:
    """Root for caches, downloaded weights, the case store and indexes (``$CXRKIT_HOME`` or ~/.cxrkit)."""
    home = Path(os.environ.get("CXRKIT_HOME", Path.home() / ".cxrkit")).expanduser()
    home.mkdir(parents=True, exist_ok=True)
    return home
