"""`cxr segment` outputs and its no-lungs warning; POST /v1/segment."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cxrkit.cli import app
from tests.seg_helpers import constant_segmenter, synthetic_cxr

runner = CliRunner()


@pytest.fixture(scope="module")
def all_lungs(tmp_path_factory) -> Path:
    return constant_segmenter(tmp_path_factory.mktemp("seg") / "all_lungs", logit=8.0)


@pytest.fixture(scope="module")
def no_lungs(tmp_path_factory) -> Path:
    return constant_segmenter(tmp_path_factory.mktemp("seg") / "no_lungs", logit=-8.0)


@pytest.fixture
def xrays(tmp_path) -> list[Path]:
    paths = []
    for i, (h, w) in enumerate([(70, 50), (40, 64)]):
        img, _ = synthetic_cxr(64, seed=i)
        path = tmp_path / "in" / f"cxr{i}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(img).resize((w, h)).save(path)
        paths.append(path)
    return paths


def test_segment_writes_mask_overlay_and_record(all_lungs, xrays, tmp_path) -> None:
    out = tmp_path / "out"
    res = runner.invoke(app, ["segment", *map(str, xrays), "--model", str(all_lungs), "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    result = json.loads(res.stdout)
    assert result["warnings"] == 0 and len(result["images"]) == 2
    for rec, path in zip(result["images"], xrays, strict=True):
        w, h = Image.open(path).size
        mask = np.asarray(Image.open(rec["mask"]))
        assert mask.shape == (h, w) and set(np.unique(mask)) == {255}  # at the input's size, 255 = lung
        overlay = np.asarray(Image.open(rec["overlay"]))
        assert overlay.shape == (h, w, 3)
        assert rec["lungs_found"] and rec["warning"] is None
        assert rec["lung_fraction"] == 1.0 and rec["bbox"] == [0, 0, w, h]
    assert json.loads((out / "segment.json").read_text())["images"][0]["path"] == str(xrays[0])


def test_segment_warns_when_no_lungs(no_lungs, xrays, tmp_path) -> None:
    res = runner.invoke(app, ["segment", str(xrays[0]), "-m", str(no_lungs), "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    assert "WARNING no lungs found" in res.output and "lateral view" in res.output
    rec = json.loads((tmp_path / "o" / "segment.json").read_text())["images"][0]
    assert rec["lungs_found"] is False and rec["bbox"] is None and rec["lung_fraction"] == 0.0
    assert not np.asarray(Image.open(rec["mask"])).any()


def test_segment_rejects_a_classifier_bundle(tmp_path, xrays) -> None:
    (tmp_path / "clf").mkdir()
    (tmp_path / "clf" / "config.json").write_text(json.dumps({"architecture": "tiny_cnn"}))
    res = runner.invoke(app, ["segment", str(xrays[0]), "-m", str(tmp_path / "clf"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "not a segmentation model" in res.output


def _png(path: Path) -> bytes:
    return path.read_bytes()


def test_api_segment(make_client, all_lungs, no_lungs, xrays, monkeypatch) -> None:
    client, _ = make_client()
    monkeypatch.setenv("CXRKIT_SEGMENTER", str(all_lungs))
    r = client.post("/v1/segment", files={"file": ("x.png", _png(xrays[1]), "image/png")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["width"] == 64 and body["height"] == 40 and body["bbox"] == [0, 0, 64, 40]
    mask = np.asarray(Image.open(io.BytesIO(base64.b64decode(body["mask_png"]))))
    assert mask.shape == (40, 64) and mask.min() == 255
    assert np.asarray(Image.open(io.BytesIO(base64.b64decode(body["overlay_png"])))).shape == (40, 64, 3)
    assert "outline_png" not in body  # only on request
    monkeypatch.setenv("CXRKIT_SEGMENTER", str(no_lungs))
    r = client.post(
        "/v1/segment",
        files={"file": ("x.png", _png(xrays[0]), "image/png")},
        data={"include_mask": "false", "include_outline": "true"},
    )
    body = r.json()
    assert r.status_code == 200 and body["lungs_found"] is False and "no lungs found" in body["warning"]
    assert "mask_png" not in body
    outline = np.asarray(Image.open(io.BytesIO(base64.b64decode(body["outline_png"]))))
    assert outline.shape == (70, 50, 4) and not outline[..., 3].any()  # transparent: no lungs, no outline


def test_api_segment_bad_input(make_client, all_lungs, monkeypatch) -> None:
    client, _ = make_client()
    monkeypatch.setenv("CXRKIT_SEGMENTER", str(all_lungs))
    r = client.post("/v1/segment", files={"file": ("x.png", b"not an image", "image/png")})
    assert 400 <= r.status_code < 500 and r.json()["detail"]
    monkeypatch.setenv("CXRKIT_SEGMENTER", "/nonexistent/segmenter")
    r = client.post("/v1/segment", files={"file": ("x.png", b"x", "image/png")})
    assert r.status_code == 404 and r.json()["code"] == "no_segmenter"
