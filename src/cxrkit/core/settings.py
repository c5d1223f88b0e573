"""Where cxrkit keeps its files (CXRKIT_HOME) and other environment settings."""

from __future__ import annotations

import os
from pathlib import Path


def cxrkit_home() -> Path:
    """Root for caches, downloaded weights, the case store and indexes (``$CXRKIT_HOME`` or ~/.cxrkit)."""
    home = Path(os.environ.get("CXRKIT_HOME", Path.home() / ".cxrkit")).expanduser()
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    private_dir(home)
    return home


DEFAULT_MODEL_ENV = "CXRKIT_DEFAULT_MODEL"


def default_model_setting() -> str | None:
    """The model a user declared as the default (``$CXRKIT_DEFAULT_MODEL``: a bundle name or folder), if any."""
    value = os.environ.get(DEFAULT_MODEL_ENV, "").strip()
    return value or None


def private_dir(path: Path) -> None:
    """Make a folder of ours owner-only (0700): it holds the case store, with patient IDs."""
    try:
        st = path.stat()
        if st.st_uid == os.getuid() and st.st_mode & 0o077:
            path.chmod(0o700)
    except OSError:  # not ours, or a file system without modes: leave it
        pass


def private_file(path: Path) -> None:
    """Create ``path`` if missing and make it owner-only (0600), before anything is written to it."""
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    os.close(fd)
    try:
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
    except OSError:
        pass
