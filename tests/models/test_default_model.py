"""The declared default model (issue 12, item 12): $CXRKIT_DEFAULT_MODEL, else 'all', else 'pneumonia'; never alphabetical."""

from __future__ import annotations

import json

import pytest

from cxrkit.core.errors import UnknownNameError
from cxrkit.models import list_bundles
from cxrkit.models.bundle import SHIPPED_DIR, default_bundle


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv("CXRKIT_DEFAULT_MODEL", raising=False)


def _install(tmp_path, name: str) -> None:
    home = tmp_path / "cxrkit_home" / "models" / name
    home.mkdir(parents=True)
    (home / "config.json").write_text(json.dumps({}))


@pytest.mark.skipif((SHIPPED_DIR / "all").is_dir(), reason="a shipped 'all' model is the default")
def test_without_all_the_declared_fallback_is_pneumonia_not_the_first_name():
    assert sorted(list_bundles())[0] != "pneumonia"  # alphabetical order would pick another one
    assert default_bundle() == "pneumonia"


def test_an_installed_all_model_is_the_default(tmp_path):
    _install(tmp_path, "all")
    assert default_bundle() == "all"


def test_the_environment_wins_and_a_bad_value_names_the_variable(monkeypatch):
    monkeypatch.setenv("CXRKIT_DEFAULT_MODEL", "nih14")
    assert default_bundle() == "nih14"
    monkeypatch.setenv("CXRKIT_DEFAULT_MODEL", "nosuchmodel")
    with pytest.raises(UnknownNameError, match="CXRKIT_DEFAULT_MODEL"):
        default_bundle()


def test_server_serves_the_default_first(monkeypatch):
    from cxrkit.serving.server import default_models

    names = default_models()
    assert names[0] == default_bundle() and sorted(names) == sorted(list_bundles())
    monkeypatch.setenv("CXRKIT_DEFAULT_MODEL", "nih14")
    assert default_models()[0] == "nih14"
