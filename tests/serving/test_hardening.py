"""Issue 12, server and storage: hostile input is refused fast with a 4xx and nothing recorded."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tests import hostile
from tests.serving.conftest import png_bytes


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

    from cxrkit.serving.uploads import UploadError
    from cxrkit.serving.workqueue import WorkQueue

    q = WorkQueue(slots=2, max_waiting=1, pixel_budget=100, wait_s=0.3)
    with q.slot(80):
        # A second big image does not fit the pixel budget beside the first: it waits, then times out.
        t0 = time.perf_counter()
        with pytest.raises(UploadError) as err, q.slot(80):
            pass
        assert err.value.status == 503 and err.value.headers["Retry-After"]
        assert 0.25 < time.perf_counter() - t0 < 2
        with q.slot(10):  # a small one fits
            pass

        def wait_and_time_out() -> None:
            with pytest.raises(UploadError), q.slot(80):
                pass

        blocker = threading.Thread(target=wait_and_time_out)
        blocker.start()
        time.sleep(0.05)  # it is waiting now: the queue (1 place) is full, the next is refused at once
        t0 = time.perf_counter()
        with pytest.raises(UploadError, match="busy"), q.slot(80):
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
