"""Issue 12, server and storage: hostile input is refused fast with a 4xx and nothing recorded."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tests import hostile
from tests.serving.conftest import png_bytes


@pytest.fixture
def keep_root_logging():
    """`cxr` reconfigures the root logger onto CliRunner's stream, closed afterwards: restore it."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _post(client, data: bytes, **fields):
    return client.post("/v1/predict", files={"file": ("x.bin", data, "application/octet-stream")}, data=fields)


@pytest.fixture(scope="module")
def gib_bomb() -> bytes:
    return hostile.deflated_dicom_bomb(1 << 30)


def test_deflated_dicom_bomb_is_refused_fast(make_client, gib_bomb):
    """1: a ~1 MB Deflated DICOM holding 1 GiB of pixels: fast 4xx, nothing recorded."""
    client, app = make_client()
    assert len(gib_bomb) < 1.5e6
    t0 = time.perf_counter()
    r = _post(client, gib_bomb)
    assert 400 <= r.status_code < 500 and "decompression bomb" in r.json()["detail"], r.text
    assert time.perf_counter() - t0 < 2.0
    assert app.state.cxr.store.count() == 0


@pytest.mark.parametrize(
    "make",
    [
        lambda: hostile.deflated_header_bomb(64 << 20),
        lambda: hostile.rle_bomb(8192, 8192),
        lambda: hostile.rle_bomb(2048, 2048, frames=200),
        lambda: hostile.encapsulated_dicom(hostile.JPEG2000, 30000, 30000),
        lambda: hostile.encapsulated_dicom(hostile.JPEG_BASELINE, 4096, 4096, frames=1000),
    ],
    ids=["deflated_header", "rle_8k", "rle_frames", "j2k_30k", "jpeg_frames"],
)
def test_compressed_dicom_bombs_are_4xx(make_client, make):
    client, app = make_client()
    r = _post(client, make())
    assert r.status_code in (413, 415, 422), r.text
    assert app.state.cxr.store.count() == 0


def test_good_deflated_dicom_is_decoded(make_client):
    client, app = make_client()
    pixels = (np.arange(64 * 64).reshape(64, 64) % 4000).astype(np.uint16)
    r = _post(client, hostile.deflated_dicom(pixels, patient_id="DEFL-1"))
    assert r.status_code == 200, r.text
    assert r.json()["patient_id"] == "DEFL-1" and app.state.cxr.store.count() == 1


@pytest.mark.parametrize("kind", ["nan", "inf"])
def test_non_finite_pixels_are_422(make_client, kind):
    """2: a float TIFF with one NaN (or inf) pixel is refused, not analysed as all-black."""
    client, app = make_client()
    r = _post(client, hostile.float_tiff(nan=kind == "nan", inf=kind == "inf"))
    assert r.status_code == 422 and r.json()["code"] == "non_finite", r.text
    assert app.state.cxr.store.count() == 0


@pytest.mark.parametrize("pid", [r"$\undefinedmacro$", "$x^{$", r"a_b^c $\frac{1}{0}$"])
def test_timeline_png_renders_mathtext_patient_ids_literally(make_client, pid, caplog):
    """3: matplotlib mathtext in a patient ID is drawn as text, and the ID stays out of the logs."""
    import urllib.parse

    client, _ = make_client()
    for seed, date in ((1, "2020-01-02"), (2, "2021-03-04")):
        r = _post(client, png_bytes(seed), patient_id=pid, study_date=date)
        assert r.status_code == 200, r.text
    caplog.set_level("DEBUG")
    r = client.get(f"/v1/patients/{urllib.parse.quote(pid, safe='')}/timeline.png")
    assert r.status_code == 200 and r.content.startswith(b"\x89PNG")
    assert pid not in caplog.text


@pytest.mark.parametrize("date", ["0001-01-01", "9999-12-31", "1899-12-31", "18991231"])
def test_study_dates_out_of_range_are_422(make_client, date):
    """3: study dates are bounded to 1900..tomorrow."""
    client, app = make_client()
    r = _post(client, png_bytes(), patient_id="P", study_date=date)
    assert r.status_code == 422 and r.json()["code"] == "bad_study_date", r.text
    assert app.state.cxr.store.count() == 0


def test_out_of_range_dicom_study_date_is_left_out(make_client, tmp_path):
    from tests.conftest import write_dicom

    client, _ = make_client()
    dcm = write_dicom(tmp_path / "x.dcm", np.full((32, 32), 900, np.uint16) + np.eye(32, dtype=np.uint16) * 50,
                      study_date="00010101").read_bytes()  # fmt: skip
    r = _post(client, dcm)
    assert r.status_code == 200 and r.json()["study_date"] is None


def test_untrusted_host_header_is_refused(make_client):
    """4: DNS rebinding: a Host that is not this machine gets 400; --allowed-host widens."""
    from cxrkit.serving.security import WebPolicy

    client, _ = make_client()
    assert client.get("/health", headers={"Host": "evil.example"}).status_code == 400
    assert client.get("/health", headers={"Host": "127.0.0.1:8000"}).status_code == 200
    client2, _ = make_client(web=WebPolicy(allowed_hosts=("cxr.lan",)))
    assert client2.get("/health", headers={"Host": "cxr.lan:8000"}).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Referer": "http://evil.example/page.html"},
        {"Sec-Fetch-Site": "cross-site"},
    ],
)
def test_cross_origin_writes_are_refused(make_client, headers):
    """4: a form POST from another origin records nothing (403)."""
    client, app = make_client()
    r = client.post("/v1/predict", files={"file": ("x.png", png_bytes(), "image/png")}, data={"patient_id": "V"},
                    headers=headers)  # fmt: skip
    assert r.status_code == 403 and r.json()["code"] == "cross_origin", r.text
    assert "access-control-allow-origin" not in r.headers
    assert app.state.cxr.store.count() == 0


def test_same_origin_and_allowed_origin_writes_pass(make_client):
    from cxrkit.serving.security import WebPolicy

    client, app = make_client(web=WebPolicy(allowed_origins=("https://pacs.example.org",)))
    for headers in (
        {"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"},
        {"Origin": "https://pacs.example.org"},
        {},  # curl and scripts send no Origin
    ):
        r = client.post("/v1/predict", files={"file": ("x.png", png_bytes(), "image/png")}, headers=headers)
        assert r.status_code == 200, (headers, r.text)
    assert app.state.cxr.store.count() == 3
    r = client.options(
        "/v1/predict", headers={"Origin": "https://pacs.example.org", "Access-Control-Request-Method": "POST"}
    )
    assert "access-control-allow-origin" not in r.headers  # no CORS


def test_security_headers_and_offline_docs(make_client):
    """7: CSP with frame-ancestors, nosniff, Referrer-Policy; /docs loads nothing from a CDN."""
    client, _ = make_client()
    for path in ("/", "/health", "/docs", "/v1/models"):
        r = client.get(path)
        assert r.status_code == 200, path
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "no-referrer"
    page = client.get("/docs").text
    assert "cdn" not in page.lower() and "https://" not in page
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        assert asset in page
        src = page.split(asset)[0].rsplit('"', 1)[-1] + asset
        assert client.get(src).status_code == 200, src


def test_home_and_case_store_are_owner_only(tmp_path, monkeypatch):
    """7: CXRKIT_HOME is 0700 and cases.db 0600 (it holds patient IDs)."""
    import os
    import stat

    from cxrkit.serving.store import CaseStore

    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    monkeypatch.setenv("CXRKIT_HOME", str(home))
    os.umask(os.umask(0o022))  # read the umask: the test holds under the usual 022
    store = CaseStore()
    try:
        store.record(kind="predict", model={"name": "m", "sha256": "x"}, input_sha256="y", outputs={})
        assert stat.S_IMODE(home.stat().st_mode) == 0o700
        for f in home.glob("cases.db*"):
            assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    finally:
        store.close()


def test_work_queue_pixel_budget_and_bound():
    """5: slots and a pixel budget bound concurrent work; a full queue refuses at once with Retry-After."""
    import threading

    from cxrkit.serving.errors import Unavailable
    from cxrkit.serving.workqueue import WorkQueue

    q = WorkQueue(slots=2, max_waiting=1, pixel_budget=100, wait_s=0.3)
    with q.slot(80):
        # A second big image does not fit the pixel budget beside the first: it waits, then times out.
        t0 = time.perf_counter()
        with pytest.raises(Unavailable) as err, q.slot(80):
            pass
        assert err.value.status == 503 and err.value.headers["Retry-After"]
        assert 0.25 < time.perf_counter() - t0 < 2
        with q.slot(10):  # a small one fits
            pass

        def wait_and_time_out() -> None:
            with pytest.raises(Unavailable), q.slot(80):
                pass

        blocker = threading.Thread(target=wait_and_time_out)
        blocker.start()
        time.sleep(0.05)  # it is waiting now: the queue (1 place) is full, the next is refused at once
        t0 = time.perf_counter()
        with pytest.raises(Unavailable, match="busy"), q.slot(80):
            pass
        assert time.perf_counter() - t0 < 0.1
        blocker.join()
    assert q.describe()["running"] == 0 and q.describe()["pixels_in_flight"] == 0


def test_busy_server_answers_503_with_retry_after(make_client, monkeypatch):
    """5: concurrent expensive requests beyond the queue get 503 + Retry-After, and nothing is recorded for them."""
    from concurrent.futures import ThreadPoolExecutor

    from cxrkit.serving.uploads import ServerLimits

    client, app = make_client(limits=ServerLimits(max_concurrent=1, max_queue=1, queue_wait_s=5))
    predictor = app.state.cxr.models["tiny"].predictor
    slow = predictor.probabilities

    def probabilities(images):
        time.sleep(0.6)
        return slow(images)

    monkeypatch.setattr(predictor, "probabilities", probabilities)
    with ThreadPoolExecutor(6) as pool:
        rs = list(pool.map(lambda i: _post(client, png_bytes(i)), range(6)))
    codes = sorted(r.status_code for r in rs)
    assert 503 in codes and 200 in codes and set(codes) <= {200, 503}, codes
    busy = next(r for r in rs if r.status_code == 503)
    assert int(busy.headers["Retry-After"]) >= 1 and busy.json()["code"] == "busy"
    assert app.state.cxr.store.count() == codes.count(200)


def test_idempotency_key_replays_the_first_response(make_client):
    """6: a retried request with the same Idempotency-Key returns the first response; one record."""
    client, app = make_client()
    data, hdr = png_bytes(5), {"Idempotency-Key": "retry-1"}
    r1 = client.post("/v1/predict", files={"file": ("x.png", data)}, data={"patient_id": "P"}, headers=hdr)
    r2 = client.post("/v1/predict", files={"file": ("x.png", data)}, data={"patient_id": "P"}, headers=hdr)
    assert r1.status_code == r2.status_code == 200
    assert r1.json() == r2.json() and r2.headers.get("idempotent-replayed") == "true"
    assert app.state.cxr.store.count() == 1
    # The same key for another request is refused; no key means a new analysis each time.
    r3 = client.post("/v1/predict", files={"file": ("x.png", png_bytes(6))}, data={"patient_id": "P"}, headers=hdr)
    assert r3.status_code == 422 and r3.json()["code"] == "idempotency_key_reused"
    e1 = client.post(
        "/v1/explain", files={"file": ("x.png", data)}, headers={"Idempotency-Key": "e"}, data={"overlay": "url"}
    )
    e2 = client.post(
        "/v1/explain", files={"file": ("x.png", data)}, headers={"Idempotency-Key": "e"}, data={"overlay": "url"}
    )
    assert e1.json()["analysis_id"] == e2.json()["analysis_id"]
    client.post("/v1/predict", files={"file": ("x.png", data)})
    assert app.state.cxr.store.count() == 3


def test_concurrent_retries_make_one_record(make_client):
    from concurrent.futures import ThreadPoolExecutor

    client, app = make_client()
    data = png_bytes(9)

    def go(_):
        return client.post("/v1/predict", files={"file": ("x.png", data)}, headers={"Idempotency-Key": "k-par"})

    with ThreadPoolExecutor(4) as pool:
        rs = list(pool.map(go, range(4)))
    assert {r.status_code for r in rs} == {200}
    assert len({r.json()["analysis_id"] for r in rs}) == 1
    assert app.state.cxr.store.count() == 1


def test_api_keys_scopes_audit_and_lockout(make_client):
    """8: scoped keys stored hashed, the key recorded with each analysis, an audit trail, failed-attempt limit."""
    from sqlalchemy import text

    client, app = make_client(api_key="env-secret")
    keys = app.state.cxr.keys
    reader, _ = keys.create("viewer", "read")
    writer, winfo = keys.create("scanner", "write")
    with app.state.cxr.store.engine.connect() as c:
        stored = " ".join(str(v) for row in c.execute(text("SELECT * FROM api_keys")) for v in row)
    assert reader.split("_", 2)[2] not in stored and writer.split("_", 2)[2] not in stored  # only hashes

    up = {"file": ("x.png", png_bytes(1))}
    assert client.post("/v1/predict", files=up).status_code == 401
    r = client.post("/v1/predict", files=up, headers={"X-API-Key": reader})
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    assert client.get("/v1/models", headers={"X-API-Key": reader}).status_code == 200
    r = client.post("/v1/predict", files=up, headers={"Authorization": f"Bearer {writer}"}, data={"patient_id": "A"})
    assert r.status_code == 200
    aid = r.json()["analysis_id"]
    assert app.state.cxr.store.get(aid)["key_id"] == winfo["id"]
    assert client.get(f"/v1/analyses/{aid}", headers={"X-API-Key": reader}).status_code == 200
    assert client.get("/v1/audit", headers={"X-API-Key": writer}).status_code == 403
    entries = client.get("/v1/audit", headers={"X-API-Key": "env-secret"}).json()["entries"]
    assert {"key_id": winfo["id"], "action": "write", "analysis_id": aid}.items() <= next(
        e for e in entries if e["analysis_id"] == aid
    ).items()
    assert any(e["action"] == "read" and e["path"] == f"/v1/analyses/{aid}" for e in entries)
    assert any(e["action"] == "denied" and e["status"] == 401 for e in entries)
    # Revoked keys stop working; repeated failures lock the client out (429), even with a good key.
    assert keys.revoke(winfo["id"])
    assert client.post("/v1/predict", files=up, headers={"X-API-Key": writer}).status_code == 401
    for _ in range(keys.max_failures):
        client.get("/v1/models", headers={"X-API-Key": "cxr_nope_guess"})
    r = client.get("/v1/models", headers={"X-API-Key": reader})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0


def test_keys_cli_add_list_revoke(tmp_path, monkeypatch):
    import json

    from typer.testing import CliRunner

    from cxrkit.cli import app

    db = f"sqlite:///{tmp_path / 'k.db'}"
    r = CliRunner().invoke(app, ["keys", "add", "--scope", "write", "--name", "ward-3", "--db", db])
    assert r.exit_code == 0, r.output
    made = json.loads(r.output)
    assert made["key"].startswith("cxr_") and made["scope"] == "write"
    listed = json.loads(CliRunner().invoke(app, ["keys", "list", "--db", db]).output)
    assert [k["id"] for k in listed] == [made["id"]] and "key" not in listed[0]
    assert CliRunner().invoke(app, ["keys", "revoke", made["id"], "--db", db]).exit_code == 0
    assert CliRunner().invoke(app, ["keys", "revoke", made["id"], "--db", db]).exit_code == 2
    assert CliRunner().invoke(app, ["keys", "add", "--scope", "root", "--db", db]).exit_code == 2


@pytest.mark.parametrize("bad", ["high", None, -0.1, 2, True, {"x": 1}])
def test_bad_bundle_threshold_is_a_clear_error_in_predict_and_serve(serving_bundle, tmp_path, bad, keep_root_logging):
    """9: a threshold of "high" gave a traceback in predict and serve; now a BundleError naming file and fix."""
    import json
    import shutil

    from typer.testing import CliRunner

    from cxrkit.cli import app as cli
    from cxrkit.core.errors import BundleError
    from cxrkit.serving.app import create_app

    bundle = tmp_path / "bundle"
    shutil.copytree(serving_bundle, bundle)
    config = json.loads((bundle / "config.json").read_text())
    config["thresholds"] = {next(iter(config["thresholds"])): bad}
    (bundle / "config.json").write_text(json.dumps(config))
    with pytest.raises(BundleError, match=r"config\.json.*threshold.*Fix"):
        create_app([str(bundle)], db_url=f"sqlite:///{tmp_path / 'c.db'}")
    img = tmp_path / "x.png"
    img.write_bytes(png_bytes())
    r = CliRunner().invoke(cli, ["predict", "--model", str(bundle), str(img)])
    assert r.exit_code == 2 and "threshold" in r.output and "Traceback" not in r.output, r.output


@pytest.mark.parametrize("mode", ["L", "I;16", "F"])
def test_banded_decode_matches_whole_image_conversion(mode):
    """5: big images are copied out of Pillow band by band (lower peak memory) with the same values."""
    from PIL import Image

    from cxrkit.io.decode import BAND_ROWS, pil_to_gray_float

    rng = np.random.default_rng(0)
    h, w = BAND_ROWS * 2 + 37, 50
    if mode == "L":
        raw = rng.integers(0, 256, (h, w), dtype=np.uint8)
        want = raw.astype(np.float32) / 255.0
    elif mode == "I;16":
        raw = rng.integers(0, 65536, (h, w), dtype=np.uint16)
        want = raw.astype(np.float32) / 65535.0
    else:
        raw = rng.normal(3, 2, (h, w)).astype(np.float32)
        want = (raw - raw.min()) / (raw.max() - raw.min())
    got = pil_to_gray_float(Image.fromarray(raw))
    assert got.dtype == np.float32 and got.shape == (h, w)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_idempotency_keys_expire_after_a_day(tmp_path):
    import datetime as dt

    from sqlalchemy import update

    from cxrkit.serving.store import CaseStore, IdempotentResponse

    store = CaseStore(f"sqlite:///{tmp_path / 'i.db'}")
    try:
        kw = {"kind": "predict", "model": {"name": "m", "sha256": "s"}, "input_sha256": "x", "outputs": {}}
        store.record_once("old", "", "r1", lambda rec: {"analysis_id": rec["analysis_id"]}, **kw)
        with store._sessions.begin() as s:
            s.execute(update(IdempotentResponse).values(created_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=2)))
        store.record_once("new", "", "r2", lambda rec: {"analysis_id": rec["analysis_id"]}, **kw)
        assert store.replay("old", "", "r1") is None and store.replay("new", "", "r2") is not None
    finally:
        store.close()
