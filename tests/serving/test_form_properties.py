"""Property-based tests of the upload form fields (Hypothesis): any text is either cleaned to a safe
value or refused with a 422 UploadError, never another exception, and valid values round-trip."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cxrkit.serving.uploads import EARLIEST_STUDY_DATE, UploadError, clean_patient_id, parse_study_date

RUNS = [pytest.param(100, id="fast"), pytest.param(5000, id="slow", marks=pytest.mark.slow)]


def _props(n: int):
    return settings(max_examples=n, deadline=None, database=None, suppress_health_check=list(HealthCheck))


@pytest.mark.parametrize("n", RUNS)
def test_patient_id_is_clean_or_a_422(n):
    @_props(n)
    @given(st.one_of(st.none(), st.text(max_size=300)))
    def check(value: str | None) -> None:
        try:
            out = clean_patient_id(value)
        except UploadError as e:
            assert e.status == 422 and e.code == "bad_patient_id"
            return
        if out is not None:
            assert out == out.strip() and 0 < len(out) <= 128 and out.isprintable() and "/" not in out
            assert clean_patient_id(out) == out  # idempotent: what is stored reads back the same
        else:
            assert value is None or not value.strip()

    check()


@pytest.mark.parametrize("n", RUNS)
def test_study_date_is_iso_in_range_or_a_422(n):
    @_props(n)
    @given(st.one_of(st.none(), st.text(max_size=40), st.from_regex(r"\A\s*\d{4}-?\d{2}-?\d{2}\s*\Z")))
    def check(value: str | None) -> None:
        try:
            out = parse_study_date(value)
        except UploadError as e:
            assert e.status == 422 and e.code == "bad_study_date"
            return
        if out is None:
            assert value is None or not value.strip()
            return
        day = dt.date.fromisoformat(out)
        assert EARLIEST_STUDY_DATE <= day <= dt.date.today() + dt.timedelta(days=2)

    check()


@pytest.mark.parametrize("n", RUNS)
def test_valid_dates_round_trip_in_both_forms(n):
    @_props(n)
    @given(st.dates(min_value=EARLIEST_STUDY_DATE, max_value=dt.date.today()))
    def check(day: dt.date) -> None:
        assert parse_study_date(day.isoformat()) == day.isoformat()
        assert parse_study_date(day.strftime("%Y%m%d")) == day.isoformat()

    check()
