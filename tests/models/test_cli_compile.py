"""`cxr predict` / `cxr evaluate --compile`: the flag reaches the engine's InferenceOptions(compile=True)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cxrkit.cli import app
from cxrkit.core.errors import ConfigError

runner = CliRunner()


class _Stop(ConfigError):
    pass


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_compile_flag_sets_the_inference_option(command, monkeypatch, tmp_path):
    seen = []

    def capture(model, *args, **kwargs):  # stands in for loading (predict) or evaluating (evaluate) the model
        seen.append(kwargs["inference"] if command == "evaluate" else args[0])
        raise _Stop("captured")

    if command == "predict":
        monkeypatch.setattr("cxrkit.serving.predictor.Predictor.load", capture)
    else:
        monkeypatch.setattr("cxrkit.evaluation.run.evaluate_model", capture)
    for flag, expected in ((["--compile"], True), ([], False)):
        r = runner.invoke(app, [command, str(tmp_path), "--model", "pneumonia", *flag])
        assert "captured" in r.output, r.output
        assert seen[-1].compile is expected


def test_compile_with_another_backend_is_refused_by_name():
    r = runner.invoke(app, ["predict", "x.png", "--compile", "--backend", "onnx"])
    assert r.exit_code != 0 and "compile applies to the torch backend" in r.output
