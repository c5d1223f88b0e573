"""JSON output of `cxr index build|add|query|evaluate` and `cxr timeline`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cxrkit.cli import app

runner = CliRunner()


def run_json(*args: str) -> dict:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def cli_index(search_bundle: Path, search_folder: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "index"
    normal = f"{search_folder}::NORMAL"
    desc = run_json("index", "build", normal, "--model", str(search_bundle), "--out", str(out), "--exact")
    assert desc["count"] == 12 and desc["index_type"] == "exact"
    assert {"path", "count", "dim", "index_type", "model", "classes", "sources"} <= desc.keys()
    return out


def test_index_add_query_evaluate_json(cli_index: Path, search_folder: Path, search_bundle: Path, tmp_path: Path):
    desc = run_json("index", "add", str(cli_index), f"{search_folder}::PNEUMONIA", "--model", str(search_bundle))
    assert desc["count"] == 24
    image = sorted((search_folder / "PNEUMONIA").glob("*.png"))[0]
    grid = tmp_path / "grid.png"
    out = run_json("index", "query", str(cli_index), str(image), "-k", "5", "--grid", str(grid))
    assert {"index", "model", "results", "grid"} <= out.keys() and grid.is_file()
    (res,) = out["results"]
    assert res["query"] == str(image) and len(res["neighbours"]) == 5
    hit = res["neighbours"][0]
    assert {"rank", "similarity", "path", "labels", "patient_id", "study_date", "offset", "source"} <= hit.keys()
    assert hit["path"] == str(image.resolve()) and hit["similarity"] == pytest.approx(1.0, abs=1e-4)
    ev = run_json("index", "evaluate", str(cli_index), "--k", "3")
    assert {"k", "n_queries", "precision_at_k", "knn", "protocol", "model", "index_type"} <= ev.keys()
    assert ev["k"] == 3 and ev["n_queries"] == 24 and 0.0 <= ev["precision_at_k"] <= 1.0
    assert {"accuracy", "auroc"} <= ev["knn"].keys()


def test_query_with_other_model_fails_cleanly(cli_index: Path, other_bundle: Path, search_folder: Path):
    image = sorted((search_folder / "NORMAL").glob("*.png"))[0]
    result = runner.invoke(app, ["index", "query", str(cli_index), str(image), "--model", str(other_bundle)])
    assert result.exit_code == 2
    assert "fingerprint" in result.output and "Fix" in result.output


def test_timeline_json(cli_index: Path, search_folder: Path, search_bundle: Path, tmp_path: Path):
    plot = tmp_path / "tl.png"
    tl = run_json(
        "timeline", str(search_folder), "--model", str(search_bundle), "--patient", "person0",
        "--index", str(cli_index), "-k", "4", "--plot", str(plot),
    )  # fmt: skip
    keys = {"patient_id", "ordered_by", "ordering_notes", "n_studies", "studies", "drift", "verdict", "rule"}
    assert keys | {"severity_rule", "model", "plot"} <= tl.keys() and plot.is_file()
    assert tl["patient_id"] == "person0" and tl["ordered_by"] == "file_name" and tl["n_studies"] == 2
    st = tl["studies"][0]
    assert {"study", "order_value", "images", "probabilities", "severity", "neighbour_severity"} <= st.keys()
    assert 0.0 <= st["neighbour_severity"] <= 1.0
    ranked = run_json("timeline", str(search_folder), "--model", str(search_bundle), "--all")
    assert {"n_patients", "patients", "rule", "severity_rule"} <= ranked.keys()
    assert ranked["n_patients"] == 12
    drifts = [p["drift"] for p in ranked["patients"]]
    assert drifts == sorted(drifts, reverse=True)


def test_timeline_unknown_patient_lists_known_ones(search_folder: Path, search_bundle: Path):
    result = runner.invoke(app, ["timeline", str(search_folder), "--model", str(search_bundle), "--patient", "nobody"])
    assert result.exit_code == 2 and "nobody" in result.output and "person" in result.output


def test_backend_reaches_timelines_and_queries(
    cli_index: Path, search_folder: Path, search_bundle: Path, tmp_path, monkeypatch
):
    monkeypatch.setenv("CXRKIT_HOME", str(tmp_path / "home"))  # where the ONNX export is cached
    args = ["timeline", str(search_folder), "--model", str(search_bundle), "--patient", "person0"]
    torch_tl = run_json(*args, "--precision", "fp32")
    onnx_tl = run_json(*args, "--backend", "onnx")
    assert list((tmp_path / "home" / "onnx").iterdir())  # ONNX Runtime really ran the timeline
    for a, b in zip(torch_tl["studies"], onnx_tl["studies"], strict=True):
        for c, v in a["probabilities"].items():
            assert b["probabilities"][c] == pytest.approx(v, abs=1e-4)
    image = sorted((search_folder / "NORMAL").glob("*.png"))[0]
    out = run_json("index", "query", str(cli_index), str(image), "-k", "3", "--backend", "onnx")
    hit = out["results"][0]["neighbours"][0]
    assert hit["path"] == str(image.resolve()) and hit["similarity"] == pytest.approx(1.0, abs=1e-4)
    result = runner.invoke(app, ["index", "query", str(cli_index), str(image), "--backend", "onnx-int8"])
    assert result.exit_code == 2 and "fp32" in result.output
