"""The case store on a real PostgreSQL server: the same API, the same records."""

from __future__ import annotations

import pytest

from tests.serving.conftest import png_bytes

pytestmark = pytest.mark.postgres


def test_postgres_case_store_round_trip(make_client, postgres_url):
    client, app = make_client(db_url=postgres_url)
    store = app.state.cxr.store
    assert store.backend == "postgresql" and client.get("/health").json()["store"] == {
        "backend": "postgresql",
        "ok": True,
    }
    before = store.count()
    ids = []
    for date, seed in [("2024-02-01", 1), ("2024-01-01", 0)]:
        r = client.post(
            "/v1/predict",
            files={"file": ("x.png", png_bytes(seed), "image/png")},
            data={"patient_id": "PG-1", "study_date": date},
        )
        assert r.status_code == 200, r.text
        ids.append(r.json()["analysis_id"])
    bad = client.post(
        "/v1/predict", files={"file": ("x.png", b"not an image", "image/png")}, data={"patient_id": "PG-1"}
    )
    assert bad.status_code == 415
    assert store.count() == before + 2
    rec = client.get(f"/v1/analyses/{ids[0]}").json()
    assert rec["study_date"] == "2024-02-01" and rec["patient_id"] == "PG-1" and rec["outputs"]["findings"]
    assert rec["created_at"].endswith("+00:00")
    t = client.get("/v1/patients/PG-1/timeline").json()
    assert [s["study_date"] for s in t["studies"]] == ["2024-01-01", "2024-02-01"] and t["verdict"] in (
        "worsening",
        "improving",
        "stable",
    )
    # A second app on the same database sees the same records (tables are created only if missing).
    client2, _app2 = make_client(db_url=postgres_url)
    assert client2.get(f"/v1/analyses/{ids[1]}").json()["study_date"] == "2024-01-01"
