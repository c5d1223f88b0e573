"""Schemathesis against the app's own OpenAPI schema: every route, generated requests (valid and not),
never a 5xx. A few examples per route in the default run; many more under ``-m slow``.

The operations are driven with Hypothesis directly (``APIOperation.as_strategy``) rather than through
``schema.parametrize``/``from_fixture``: the lazy-fixture plugin breaks under pytest 9, and the app is
built from session fixtures (a trained tiny model and its index).
"""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed (pip install schemathesis)")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402

RUNS = [pytest.param(15, id="fast"), pytest.param(150, id="slow", marks=pytest.mark.slow)]


@pytest.fixture
def api_schema(make_client, serving_index):
    from cxrkit.serving.security import WebPolicy

    # Schemathesis's ASGI client says Host: testserver; the app answers only trusted hosts.
    _, app = make_client(index=serving_index, web=WebPolicy(allowed_hosts=("testserver",)))
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def test_schema_covers_every_route(api_schema):
    routes = {f"{r.ok().method.upper()} {r.ok().path}" for r in api_schema.get_all_operations()}
    for expected in ("POST /v1/predict", "POST /v1/explain", "POST /v1/similar", "GET /v1/models", "GET /health"):
        assert expected in routes


@pytest.mark.parametrize("n", RUNS)
def test_no_route_answers_5xx(api_schema, n):
    failures: list[str] = []
    statuses: dict[str, set[int]] = {}
    for result in api_schema.get_all_operations():
        operation = result.ok()

        @settings(max_examples=n, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(operation.as_strategy())
        def check(case) -> None:
            response = case.call_and_validate(checks=[not_a_server_error])
            statuses.setdefault(f"{case.method} {case.path}", set()).add(response.status_code)

        try:
            check()
        except Exception as e:  # collect every route's failure, then report them together
            failures.append(f"{operation.method.upper()} {operation.path}: {str(e)[:1500]}")
    assert not failures, "\n\n".join(failures)
    assert len(statuses) >= 8 and any(200 in codes for codes in statuses.values()), statuses  # requests got in
