"""Where cxrkit keeps its files (CXRKIT_HOME) and every other environment setting: the one module that reads
``os.environ`` (the rest of cxrkit asks here, so each variable has one name, one parser and one error)."""

from __future__ import annotations

import os
from pathlib import Path

from cxrkit.core.errors import ConfigError


def cxrkit_home() -> Path:
    """Root for caches, downloaded weights, the case store and indexes (``$CXRKIT_HOME`` or ~/.cxrkit)."""
    home = Path(setting("CXRKIT_HOME") or Path.home() / ".cxrkit").expanduser()
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    private_dir(home)
    return home


DEFAULT_MODEL_ENV = "CXRKIT_DEFAULT_MODEL"
API_KEY_ENV = "CXRKIT_API_KEY"  # cxr serve --api-key: an admin key (cxrkit.serving.keys)
INDEX_ENV = "CXRKIT_INDEX"  # the similar-case index cxr serve opens
SEGMENTER_ENV = "CXRKIT_SEGMENTER"  # the lung segmenter the server uses (default: the shipped `lungs`)
TORCH_THREADS_ENV = "CXRKIT_TORCH_THREADS"  # torch's CPU threads in a server
MAX_UPLOAD_MB_ENV = "CXRKIT_MAX_UPLOAD_MB"
MAX_CONCURRENT_ENV = "CXRKIT_MAX_CONCURRENT"
MAX_QUEUE_ENV = "CXRKIT_MAX_QUEUE"
SHARD_CACHE_ENV = "CXRKIT_SHARD_CACHE"  # where chunks of an s3:// dataset cache are downloaded to


def setting(name: str) -> str | None:
    """The environment variable ``name``, stripped; None when unset or blank."""
    value = os.environ.get(name, "").strip()
    return value or None


def default_model_setting() -> str | None:
    """The model a user declared as the default (``$CXRKIT_DEFAULT_MODEL``: a bundle name or folder), if any."""
    return setting(DEFAULT_MODEL_ENV)


def index_setting() -> Path | None:
    """``$CXRKIT_INDEX``: the similar-case index folder to serve, if set."""
    value = setting(INDEX_ENV)
    return Path(value).expanduser() if value else None


def segmenter_setting() -> str | None:
    """``$CXRKIT_SEGMENTER``: the segmentation bundle (name or folder) the server uses, if set."""
    return setting(SEGMENTER_ENV)


def torch_threads_setting() -> int | None:
    """``$CXRKIT_TORCH_THREADS`` when it is a positive whole number (anything else: None, the default applies)."""
    value = setting(TORCH_THREADS_ENV)
    return int(value) if value and value.isdigit() and int(value) > 0 else None


def shard_cache_dir() -> Path:
    """Local folder for the chunks of ``s3://`` dataset caches: ``$CXRKIT_SHARD_CACHE`` or CXRKIT_HOME/shards.

    One folder for every process of a machine (loader workers, DDP ranks, later runs): LitData locks each
    chunk while it downloads it, so a chunk is fetched once per machine, not once per worker, and a rebuilt
    cache (a newer index) replaces its old chunks.
    """
    value = setting(SHARD_CACHE_ENV)
    folder = Path(value).expanduser() if value else cxrkit_home() / "shards"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def whole_number_setting(name: str) -> int | None:
    """An environment variable that must be a whole number (>= 0), if set.

    Raises:
        ConfigError: set to anything else.
    """
    value = setting(name)
    if value is not None and not value.isdigit():
        raise ConfigError(f"{name} must be a whole number, got {value!r}.")
    return int(value) if value is not None else None


def max_upload_mb_setting() -> float | None:
    """``$CXRKIT_MAX_UPLOAD_MB``, if set.

    Raises:
        ConfigError: not a number.
    """
    value = setting(MAX_UPLOAD_MB_ENV)
    try:
        return float(value) if value is not None else None
    except ValueError:
        raise ConfigError(f"{MAX_UPLOAD_MB_ENV} must be a number of megabytes, got {value!r}.") from None


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
