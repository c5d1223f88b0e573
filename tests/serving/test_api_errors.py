"""401 and 404 are proper HTTP errors (fastapi.security schemes, ApiError), not upload errors; their JSON is
``{"detail": ..., "code": ...}`` as before."""

from __future__ import annotations

import pytest

from cxrkit.serving.errors import ApiError, NotFound, Unauthorized
from cxrkit.serving.uploads import UploadError
from tests.serving.conftest import png_bytes


def test_error_types():
    assert issubclass(UploadError, ApiError) and not issubclass(NotFound, UploadError)
    assert not issubclass(Unauthorized, UploadError)
    err = NotFound("No analysis with ID 'x'.")
    assert (err.status_code, err.code, str(err)) == (404, "not_found", "No analysis with ID 'x'.")


def test_401_shape_and_both_key_schemes(make_client):
    client, _ = make_client(api_key="s3cret")
    r = client.get("/v1/models")
    assert r.status_code == 401
    assert r.json() == {
        "detail": "A valid API key is required: send it in the X-API-Key header (or Authorization: Bearer).",
        "code": "unauthorized",
    }
    assert "Bearer" in r.headers["WWW-Authenticate"]
    assert client.get("/v1/models", headers={"Authorization": "Bearer wrong"}).json()["code"] == "unauthorized"
    assert client.get("/v1/models", headers={"Authorization": "Basic czNjcmV0"}).status_code == 401  # not a bearer
    assert client.get("/v1/models", headers={"X-API-Key": "s3cret"}).status_code == 200
    assert client.get("/v1/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert client.get("/v1/models", headers={"authorization": "bearer s3cret"}).status_code == 200


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/v1/analyses/00000000-0000-0000-0000-000000000000", "not_found"),
        ("/v1/patients/P9/timeline", "not_found"),
        ("/v1/index/images/0", "no_index"),
    ],
)
def test_404_shape(client, path, code):
    r = client.get(path)
    assert r.status_code == 404 and set(r.json()) == {"detail", "code"} and r.json()["code"] == code


def test_openapi_documents_the_key_schemes(client):
    schemes = client.get("/openapi.json").json()["components"]["securitySchemes"]
    assert schemes["APIKeyHeader"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "An API key (`cxr keys add`).",
    }
    assert schemes["HTTPBearer"]["scheme"] == "bearer"


def test_upload_errors_keep_their_shape(client):
    r = client.post("/v1/predict", files={"file": ("x.png", b"not an image", "image/png")})
    assert r.status_code == 415 and r.json()["code"] == "unsupported_format"
    assert client.post("/v1/predict", files={"file": ("x.png", png_bytes(), "image/png")}).status_code == 200
