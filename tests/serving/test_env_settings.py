"""Environment variables are read in one place (cxrkit.core.settings), with one parser and one error each."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cxrkit.core import settings
from cxrkit.core.errors import ConfigError
from cxrkit.serving.uploads import ServerLimits

SRC = Path(__file__).resolve().parents[2] / "src" / "cxrkit"


def test_only_core_settings_reads_the_environment():
    readers = [
        str(p.relative_to(SRC))
        for p in SRC.rglob("*.py")
        if p.name != "settings.py" and re.search(r"os\.environ|os\.getenv|getenv\(", p.read_text())
    ]
    assert readers == []


def test_server_limits_from_the_environment(monkeypatch):
    monkeypatch.setenv(settings.MAX_UPLOAD_MB_ENV, "2")
    monkeypatch.setenv(settings.MAX_CONCURRENT_ENV, "3")
    monkeypatch.setenv(settings.MAX_QUEUE_ENV, "0")
    limits = ServerLimits.from_env()
    assert (limits.max_upload_bytes, limits.max_concurrent, limits.max_queue) == (2 * 2**20, 3, 0)
    assert ServerLimits.from_env(max_upload_mb=1, max_concurrent=5).max_concurrent == 5  # options win
    monkeypatch.setenv(settings.MAX_QUEUE_ENV, "many")
    with pytest.raises(ConfigError, match="CXRKIT_MAX_QUEUE must be a whole number, got 'many'"):
        ServerLimits.from_env()
    monkeypatch.delenv(settings.MAX_QUEUE_ENV)
    monkeypatch.setenv(settings.MAX_UPLOAD_MB_ENV, "big")
    with pytest.raises(ConfigError, match="CXRKIT_MAX_UPLOAD_MB must be a number of megabytes"):
        ServerLimits.from_env()
    monkeypatch.setenv(settings.MAX_UPLOAD_MB_ENV, "0")
    with pytest.raises(ConfigError, match="must be > 0 MB"):
        ServerLimits.from_env()


def test_other_server_settings(monkeypatch, tmp_path):
    monkeypatch.setenv(settings.INDEX_ENV, str(tmp_path))
    monkeypatch.setenv(settings.SEGMENTER_ENV, " lungs2 ")
    monkeypatch.setenv(settings.TORCH_THREADS_ENV, "3")
    assert settings.index_setting() == tmp_path
    assert settings.segmenter_setting() == "lungs2"
    assert settings.torch_threads_setting() == 3
    monkeypatch.setenv(settings.TORCH_THREADS_ENV, "zero")  # not a count: the default applies, as before
    assert settings.torch_threads_setting() is None
    monkeypatch.setenv(settings.INDEX_ENV, "  ")
    assert settings.index_setting() is None
