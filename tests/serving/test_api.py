"""REST API: every route, API key on/off, timelines from the case store, DICOM patient fields, logging."""

from __future__ import annotations

import base64
import io
import logging

import numpy as np
import pytest
from PIL import Image

from tests.conftest import write_dicom
from tests.serving.conftest import png_bytes


def upload(data: bytes, name: str = "x.png", mime: str = "image/png") -> dict:
    return {"file": (name, data, mime)}


def rows(app) -> int:
    return app.state.cxr.store.count()


def test_health_and_page(client):
    h = client.get("/health").json()
    assert h["status"] == "ok" and h["models"] == ["tiny"] and h["index"] is False
    assert h["store"] == {"backend": "sqlite", "ok": True}
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    # Self-contained: no external script, style or font.
    assert "http://" not in page.text and "https://" not in page.text
    assert 'id="findings"' in page.text and 'id="threshold"' in page.text


def test_openapi_lists_every_route(client):
    paths = client.get("/openapi.json").json()["paths"]
    for p in (
        "/v1/predict",
        "/v1/explain",
        "/v1/similar",
        "/v1/patients/{patient_id}/timeline",
        "/v1/analyses/{analysis_id}",
        "/v1/models",
        "/health",
        "/v1/index/images/{row}",
    ):
        assert p in paths, p


def test_models(client, predictor):
    j = client.get("/v1/models").json()
    assert j["default"] == "tiny" and j["index"] is None
    (m,) = j["models"]
    assert m["sha256"] == predictor.bundle.fingerprint and m["classes"] == ["NORMAL", "PNEUMONIA"]
    assert m["version"] and 0 <= m["default_threshold"] <= 1


def test_predict_records_and_reads_back(make_client, predictor):
    client, app = make_client()
    data = png_bytes(3, bright_blob=True)
    r = client.post("/v1/predict", files=upload(data), data={"patient_id": "P-7", "study_date": "2024-03-01"})
    assert r.status_code == 200, r.text
    j = r.json()
    probs = [c["probability"] for c in j["ranked"]]
    assert probs == sorted(probs, reverse=True) and abs(sum(probs) - 1) < 1e-5
    expected = predictor.predict_bytes(data)
    assert j["findings"] == expected["findings"]
    assert j["probabilities"]["PNEUMONIA"] == pytest.approx(expected["probabilities"]["PNEUMONIA"], abs=1e-6)
    assert j["severity"] == pytest.approx(j["probabilities"]["PNEUMONIA"], abs=1e-5)
    assert j["model"]["name"] == "tiny" and j["model"]["sha256"] == predictor.bundle.fingerprint
    assert j["patient_id"] == "P-7" and j["study_date"] == "2024-03-01" and j["patient_id_source"] == "form"
    assert rows(app) == 1
    rec = client.get(f"/v1/analyses/{j['analysis_id']}").json()
    import hashlib

    assert rec["input_sha256"] == hashlib.sha256(data).hexdigest()
    assert rec["model"] == {"name": "tiny", "version": j["model"]["version"], "sha256": predictor.bundle.fingerprint}
    assert rec["patient_id"] == "P-7" and rec["study_date"] == "2024-03-01" and rec["kind"] == "predict"
    assert rec["outputs"]["findings"] == j["findings"]
    assert client.get("/v1/analyses/00000000-0000-0000-0000-000000000000").status_code == 404


def test_predict_unknown_model_is_422_and_lists_served(make_client):
    client, app = make_client()
    r = client.post("/v1/predict", files=upload(png_bytes()), data={"model": "tinyy"})
    assert r.status_code == 422 and "tiny" in r.json()["detail"]
    assert rows(app) == 0


def test_explain_formats(make_client):
    client, app = make_client()
    r = client.post(
        "/v1/explain",
        files=upload(png_bytes(5, size=48, bright_blob=True)),
        data={"include_image": "true", "map_format": "list", "map_size": "16"},
    )
    assert r.status_code == 200, r.text
    j = r.json()
    e = j["explanation"]
    png = Image.open(io.BytesIO(base64.b64decode(e["overlay_png_base64"])))
    assert png.size == (384, 384) and png.mode == "RGB"  # small images are drawn larger (legible label)
    assert e["map"]["format"] == "list" and e["map"]["shape"] == [16, 16] and e["map"]["original_shape"] == [48, 48]
    m = np.array(e["map"]["data"])
    assert m.shape == (16, 16) and m.min() >= 0 and m.max() <= 1
    assert e["target"] in ("NORMAL", "PNEUMONIA") and e["boxes"] and {"x", "y", "w", "h"} <= set(e["boxes"][0])
    assert Image.open(io.BytesIO(base64.b64decode(j["image_png_base64"]))).size == (48, 48)
    # Raw map as .npy, overlay by URL.
    r = client.post("/v1/explain", files=upload(png_bytes(5, size=48)), data={"map_format": "npy", "overlay": "url"})
    e = r.json()["explanation"]
    cam = np.load(io.BytesIO(base64.b64decode(e["map"]["npy_base64"])), allow_pickle=False)
    assert cam.shape == (48, 48) and cam.dtype == np.float32
    img = client.get(e["overlay_url"])
    assert img.status_code == 200 and img.headers["content-type"] == "image/png"
    assert rows(app) == 2
    # Bad options and a target the model lacks: 422, nothing more recorded.
    assert client.post("/v1/explain", files=upload(png_bytes()), data={"overlay": "gif"}).status_code == 422
    bad = client.post("/v1/explain", files=upload(png_bytes()), data={"target": "EFFUSION"})
    assert bad.status_code == 422 and "PNEUMONIA" in bad.json()["detail"]
    assert client.post("/v1/explain", files=upload(png_bytes()), data={"method": "magic"}).status_code == 422
    assert rows(app) == 2


def test_similar_without_index_is_404_with_fix(client):
    r = client.post("/v1/similar", files=upload(png_bytes()))
    assert r.status_code == 404 and "cxr serve --index" in r.json()["detail"]
    assert client.get("/v1/index/images/0").status_code == 404


def test_similar_and_index_images(make_client, serving_index, serving_folder):
    client, app = make_client(index=serving_index)
    r = client.post("/v1/similar", files=upload(png_bytes(9, size=32, bright_blob=True)), data={"k": "5"})
    assert r.status_code == 200, r.text
    j = r.json()
    assert len(j["neighbours"]) == 5 and j["index"]["count"] == 24
    sims = [n["similarity"] for n in j["neighbours"]]
    assert sims == sorted(sims, reverse=True)
    n0 = j["neighbours"][0]
    assert n0["labels"] and n0["patient_id"] and "path" not in n0
    # A bright blob is PNEUMONIA in this data: most neighbours should be too.
    assert sum("PNEUMONIA" in n["labels"] for n in j["neighbours"]) >= 3
    img = client.get(n0["image_url"])
    assert img.status_code == 200 and Image.open(io.BytesIO(img.content)).size == (32, 32)
    assert client.get("/v1/index/images/24").status_code == 404
    assert client.get("/v1/index/images/-1").status_code == 404
    assert client.post("/v1/similar", files=upload(png_bytes()), data={"k": "1000"}).status_code == 422
    assert rows(app) == 0  # queries are not analyses


def test_api_key(make_client):
    client, app = make_client(api_key="s3cret")
    assert client.get("/health").status_code == 200  # liveness stays open
    assert client.get("/").status_code == 200
    for method, path in [("get", "/v1/models"), ("get", "/v1/analyses/x"), ("get", "/v1/patients/P/timeline")]:
        assert getattr(client, method)(path).status_code == 401
    r = client.post("/v1/predict", files=upload(png_bytes()))
    assert r.status_code == 401 and "X-API-Key" in r.json()["detail"]
    assert client.post("/v1/predict", files=upload(png_bytes()), headers={"X-API-Key": "wrong"}).status_code == 401
    assert rows(app) == 0
    ok = client.post("/v1/predict", files=upload(png_bytes()), headers={"X-API-Key": "s3cret"})
    assert ok.status_code == 200
    assert client.get("/v1/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert client.get("/health").json()["api_key_required"] is True


def test_timeline_builds_up(make_client):
    client, _app = make_client()
    assert client.get("/v1/patients/P9/timeline").status_code == 404
    # Studies arrive out of order; severity rises with the date (blob brightness).
    studies = [("2024-03-01", 0.5, 2), ("2024-01-01", 0.0, 0), ("2024-02-01", 0.25, 1)]
    verdicts = []
    for date, _, seed in studies:
        img = png_bytes(seed, size=32, bright_blob=date >= "2024-02-01")
        r = client.post("/v1/predict", files=upload(img), data={"patient_id": "P9", "study_date": date})
        assert r.status_code == 200
        t = client.get("/v1/patients/P9/timeline").json()
        verdicts.append(t["verdict"])
    assert verdicts[0] == "single study"
    assert t["n_studies"] == 3 and [s["study_date"] for s in t["studies"]] == ["2024-01-01", "2024-02-01", "2024-03-01"]
    from cxrkit.search import drift_verdict

    sev = [s["severity"] for s in t["studies"]]
    assert t["verdict"] == drift_verdict(sev)["verdict"] and t["drift"] == pytest.approx(drift_verdict(sev)["drift"])
    assert t["model"] == "tiny"
    # Another patient's analyses never leak in; the same image re-analysed counts once.
    client.post("/v1/predict", files=upload(png_bytes(0, size=32)), data={"patient_id": "OTHER"})
    client.post(
        "/v1/predict",
        files=upload(png_bytes(2, size=32, bright_blob=True)),
        data={"patient_id": "P9", "study_date": "2024-03-01"},
    )
    t2 = client.get("/v1/patients/P9/timeline").json()
    assert t2["n_studies"] == 3 and t2["n_analyses"] == 3
    png = client.get("/v1/patients/P9/timeline.png")
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert client.get("/v1/patients/P9/timeline?model=nope").status_code == 404


def test_dicom_upload_reads_patient_from_tags(make_client, tmp_path):
    client, app = make_client()
    px = (np.linspace(0, 4000, 48 * 40).reshape(48, 40)).astype(np.uint16)
    dcm = write_dicom(tmp_path / "a.dcm", px, patient_id="DCM-42", study_date="20230115").read_bytes()
    r = client.post("/v1/predict", files=upload(dcm, "scan.bin", "application/octet-stream"))
    assert r.status_code == 200, r.text
    j = r.json()
    assert j["patient_id"] == "DCM-42" and j["patient_id_source"] == "dicom" and j["study_date"] == "2023-01-15"
    assert j["input"]["format"] == "dicom" and (j["input"]["width"], j["input"]["height"]) == (40, 48)
    t = client.get("/v1/patients/DCM-42/timeline").json()
    assert t["studies"][0]["study_date"] == "2023-01-15" and t["analyses"][0]["study_date_source"] == "recorded"
    # The form field may repeat the tag, not contradict it.
    assert client.post("/v1/predict", files=upload(dcm), data={"patient_id": "DCM-42"}).status_code == 200
    c = client.post("/v1/predict", files=upload(dcm), data={"patient_id": "SOMEONE-ELSE"})
    assert c.status_code == 422 and c.json()["code"] == "patient_conflict"
    assert rows(app) == 2


def test_logs_carry_analysis_ids_not_patients(make_client, caplog):
    client, _app = make_client()
    caplog.set_level(logging.INFO, logger="cxrkit")
    r = client.post("/v1/predict", files=upload(png_bytes()), data={"patient_id": "SECRET-PID-981"})
    client.get("/v1/patients/SECRET-PID-981/timeline")
    client.get("/v1/patients/SECRET-PID-981/timeline.png")
    # The server's own records (the test client's httpx may log URLs on its side of the wire).
    server_log = "\n".join(rec.getMessage() for rec in caplog.records if rec.name.startswith(("cxrkit", "uvicorn")))
    assert r.json()["analysis_id"] in server_log
    assert "/v1/patients/{patient_id}/timeline" in server_log
    assert "SECRET-PID-981" not in server_log


def test_missing_or_corrupt_bundle_stops_startup(serving_bundle, tmp_path):
    import shutil

    from cxrkit.core.errors import BundleError
    from cxrkit.serving.app import create_app

    with pytest.raises(BundleError, match="does not exist"):
        create_app([str(tmp_path / "nope" / "bundle")], db_url=f"sqlite:///{tmp_path / 'c.db'}")
    bad = tmp_path / "corrupt"
    shutil.copytree(serving_bundle, bad)
    w = bad / "model.safetensors"
    w.write_bytes(w.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(BundleError, match="sha256"):
        create_app([str(bad)], db_url=f"sqlite:///{tmp_path / 'c.db'}")


@pytest.fixture
def keep_root_logging():
    """`cxr` reconfigures the root logger onto CliRunner's stream, closed afterwards: restore it."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_cli_serve_refuses_to_start(monkeypatch, tmp_path, serving_bundle, keep_root_logging):
    from typer.testing import CliRunner

    from cxrkit.cli import app

    monkeypatch.setenv("CXRKIT_HOME", str(tmp_path / "home"))
    monkeypatch.setattr("cxrkit.serving.server.list_bundles", lambda: [])
    r = CliRunner().invoke(app, ["serve"])
    assert r.exit_code == 2 and "No model bundle is available" in r.output and "make ship" in r.output
    r = CliRunner().invoke(app, ["serve", "--model", str(tmp_path / "missing")])
    assert r.exit_code == 2 and "does not exist" in r.output
    r = CliRunner().invoke(app, ["serve", "--model", str(serving_bundle), "--db", "mysql+nodriver://x"])
    assert r.exit_code == 2 and "case store" in r.output.lower()


def test_store_outage_is_503_not_recorded(make_client, monkeypatch):
    from sqlalchemy.exc import OperationalError

    client, app = make_client()
    store = app.state.cxr.store

    def down(**_):
        raise OperationalError("INSERT", {}, Exception("database is down"))

    monkeypatch.setattr(store, "record", down)
    r = client.post("/v1/predict", files=upload(png_bytes()), data={"patient_id": "P"})
    assert r.status_code == 503 and r.json()["code"] == "store_unavailable"
    monkeypatch.undo()
    assert store.count() == 0


def test_explain_reports_the_probabilities_predict_reports(client):
    """/v1/explain's probabilities come from the engine /v1/predict uses (same options), not a forward of its own."""
    for seed in (1, 2):
        data = png_bytes(seed, bright_blob=seed == 2)
        predicted = client.post("/v1/predict", files=upload(data)).json()
        explained = client.post("/v1/explain", files=upload(data)).json()
        assert explained["probabilities"] == predicted["probabilities"]
        assert explained["findings"] == predicted["findings"]
        target = explained["explanation"]["target"]
        assert explained["explanation"]["probability"] == predicted["probabilities"][target]


def test_onnx_backend_serves_the_same_predictions(serving_bundle, tmp_path):
    from fastapi.testclient import TestClient

    from cxrkit.models.engine import InferenceOptions
    from cxrkit.serving.app import create_app
    from cxrkit.serving.predictor import Predictor

    app = create_app(
        {"tiny": str(serving_bundle)},
        db_url=f"sqlite:///{tmp_path / 'c.db'}",
        inference=InferenceOptions(backend="onnx"),
    )
    try:
        with TestClient(app, base_url="http://localhost") as client:
            (m,) = client.get("/v1/models").json()["models"]
            assert m["backend"] == "onnx" and m["precision"] == "fp32"
            data = png_bytes(3, bright_blob=True)
            j = client.post("/v1/predict", files=upload(data)).json()
            fp32 = Predictor.load(serving_bundle, InferenceOptions(precision="fp32"), warmup=False)
            expected = fp32.predict_bytes(data)["probabilities"]["PNEUMONIA"]
            assert j["probabilities"]["PNEUMONIA"] == pytest.approx(expected, abs=1e-4)
            explained = client.post("/v1/explain", files=upload(data))  # the map from PyTorch, the numbers from ONNX
            assert explained.status_code == 200
            assert explained.json()["probabilities"] == j["probabilities"]
    finally:
        app.state.cxr.store.close()
