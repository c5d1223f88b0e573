"""`cxr predict` / `cxr evaluate`: an unreadable file is skipped with a warning and listed; --strict exits 1."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from cxrkit.cli import app

runner = CliRunner()


@pytest.fixture
def with_bad_files(learnable, tmp_path):
    data = tmp_path / "chest_xray"
    shutil.copytree(learnable, data)
    (data / "PNEUMONIA" / "person99_bacteria_99.png").write_bytes(b"")  # empty
    (data / "NORMAL" / "IM-0099-0001.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)  # truncated
    return data


def test_predict_skips_unreadable_and_lists_them(trained, with_bad_files):
    _, out = trained
    args = ["predict", "--model", str(out / "bundle"), str(with_bad_files), "--json"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert len(res["predictions"]) == 48
    skipped = sorted(res["skipped"], key=lambda s: s["path"])
    assert [s["path"].rsplit("/", 1)[1] for s in skipped] == ["IM-0099-0001.png", "person99_bacteria_99.png"]
    assert "empty" in skipped[1]["error"] and "cannot be identified" in skipped[0]["error"]
    assert "skipped" in r.stderr  # the warning reaches the user
    strict = runner.invoke(app, [*args, "--strict"])
    assert strict.exit_code == 1 and len(json.loads(strict.stdout)["skipped"]) == 2
    text = runner.invoke(app, args[:-1])
    assert text.exit_code == 0 and "skipped 2 unreadable image(s)" in text.stderr


def test_evaluate_skips_unreadable_and_lists_them(trained, with_bad_files):
    _, out = trained
    args = ["evaluate", "--model", str(out / "bundle"), str(with_bad_files), "--json", "--n-boot", "0"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["n"] == 48 and len(res["skipped"]) == 2 and res["auroc"] > 0.9
    assert {s["path"].rsplit("/", 1)[1] for s in res["skipped"]} == {"IM-0099-0001.png", "person99_bacteria_99.png"}
    strict = runner.invoke(app, [*args, "--strict"])
    assert strict.exit_code == 1 and len(json.loads(strict.stdout)["skipped"]) == 2
