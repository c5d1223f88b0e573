"""Bad uploads: a 4xx whose JSON names the problem, never a 5xx, and nothing recorded."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tests.conftest import write_dicom
from tests.serving.conftest import png_bytes


def _img_bytes(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _bomb_png() -> bytes:
    # 12000 x 12000 = 144 M pixels of 1-bit black: a few KB on disk, far above the 50 M pixel limit.
    return _img_bytes(Image.new("1", (12000, 12000)), "PNG", optimize=True)


BAD = {
    "zero_bytes": (b"", 422, "empty"),
    "text_named_png": (b"hello, this is not an image\n" * 20, 415, "not a supported image"),
    "html": (b"<html><body>x</body></html>", 415, "not a supported image"),
    "truncated_png": (png_bytes(1, size=64)[:300], 422, "truncated"),
    "png_header_only": (b"\x89PNG\r\n\x1a\n", 422, ""),
    "jpeg_garbage": (b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4, 422, ""),
    "tiny_image": (_img_bytes(Image.new("L", (4, 4)), "PNG"), 422, "too small"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_upload_is_4xx_and_not_recorded(make_client, case):
    client, app = make_client()
    data, status, words = BAD[case]
    r = client.post("/v1/predict", files={"file": ("x.png", data, "image/png")}, data={"patient_id": "P1"})
    assert r.status_code == status, (case, r.status_code, r.text)
    body = r.json()
    assert words.lower() in body["detail"].lower() and body["code"]
    assert client.post("/v1/explain", files={"file": ("x.png", data, "image/png")}).status_code == status
    assert app.state.cxr.store.count() == 0


def test_decompression_bomb_is_413(make_client):
    client, app = make_client()
    r = client.post("/v1/predict", files={"file": ("bomb.png", _bomb_png(), "image/png")})
    assert r.status_code == 413 and "decompression" in r.json()["detail"]
    assert app.state.cxr.store.count() == 0


def test_dicom_without_pixels_is_422(make_client, tmp_path):
    client, app = make_client()
    dcm = write_dicom(tmp_path / "sr.dcm", np.zeros((32, 32), np.uint16), with_pixels=False).read_bytes()
    r = client.post("/v1/predict", files={"file": ("report.dcm", dcm, "application/dicom")})
    assert r.status_code == 422 and "no pixel data" in r.json()["detail"] and r.json()["code"] == "no_pixel_data"
    assert app.state.cxr.store.count() == 0


@pytest.mark.parametrize("mode", ["CMYK", "P", "I;16", "RGBA"])
def test_unusual_pixel_modes_are_decoded(make_client, mode):
    client, app = make_client()
    base = Image.fromarray((np.random.default_rng(0).uniform(0, 1, (40, 40)) * 255).astype(np.uint8))
    if mode == "I;16":
        img = Image.fromarray((np.asarray(base, np.uint16) * 257).astype(np.uint16))
        data = _img_bytes(img, "PNG")
    elif mode == "CMYK":
        data = _img_bytes(base.convert("CMYK"), "JPEG")
    else:
        data = _img_bytes(base.convert(mode), "PNG")
    r = client.post("/v1/predict", files={"file": ("x.bin", data, "application/octet-stream")})
    assert r.status_code == 200, r.text
    assert app.state.cxr.store.count() == 1


def test_upload_size_limit(make_client):
    client, app = make_client(max_upload_mb=0.05)  # 51 KiB
    big = _img_bytes(Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 300), dtype=np.uint8)), "PNG")
    assert len(big) > 0.05 * 2**20
    r = client.post("/v1/predict", files={"file": ("big.png", big, "image/png")})
    assert r.status_code == 413 and "limit" in r.json()["detail"]
    # A body far above the limit is refused from its Content-Length, before reading it.
    huge = b"\x89PNG\r\n\x1a\n" + bytes(3 * 2**20)
    r = client.post("/v1/predict", files={"file": ("huge.png", huge, "image/png")})
    assert r.status_code == 413
    # A chunked body (no Content-Length) is cut off while it is read.

    def chunks():
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.png"\r\n\r\n'
        for _ in range(40):
            yield bytes(64 * 1024)
        yield b"\r\n--b--\r\n"

    r = client.post("/v1/predict", content=chunks(), headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert r.status_code == 413
    assert app.state.cxr.store.count() == 0
    small = client.post("/v1/predict", files={"file": ("s.png", png_bytes(), "image/png")})
    assert small.status_code == 200


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ({"study_date": "yesterday"}, "bad_study_date"),
        ({"study_date": "2024-13-45"}, "bad_study_date"),
        ({"patient_id": "x" * 500}, "bad_patient_id"),
        ({"patient_id": "a/b"}, "bad_patient_id"),
    ],
)
def test_bad_fields_are_422(make_client, data, code):
    client, app = make_client()
    r = client.post("/v1/predict", files={"file": ("x.png", png_bytes(), "image/png")}, data=data)
    assert r.status_code == 422 and r.json()["code"] == code
    assert app.state.cxr.store.count() == 0


def test_missing_file_or_wrong_content_type(make_client):
    client, app = make_client()
    assert client.post("/v1/predict").status_code == 422
    assert client.post("/v1/predict", data={"patient_id": "P"}).status_code == 422
    assert client.post("/v1/predict", content=b"{}", headers={"Content-Type": "application/json"}).status_code == 422
    r = client.post("/v1/predict", content=b"garbage", headers={"Content-Type": "multipart/form-data; boundary=zz"})
    assert 400 <= r.status_code < 500
    assert app.state.cxr.store.count() == 0
