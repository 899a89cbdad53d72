"""transit.hsts on hand-made HTTPS samples, then on the reference service."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from checks.transit.hsts import hsts_verdict, parse_hsts
from harness.outcomes import Outcome

from .conftest import POLICY, https, integration_tests, replaced, without


def test_hsts_everywhere_passes() -> None:
    verdict = hsts_verdict(https(), POLICY)
    assert verdict.outcome is Outcome.PASS and "All 4 sampled responses" in verdict.message


def test_hsts_missing_on_the_404_only_fails_naming_it() -> None:
    verdict = hsts_verdict(https(without("strict-transport-security"), only="/does-not-exist"), POLICY)
    assert verdict.outcome is Outcome.FAIL
    assert "/does-not-exist (404) sends no Strict-Transport-Security" in verdict.message
    assert "/healthz" not in verdict.message


def test_hsts_short_without_subdomains_fails_on_both_counts() -> None:
    verdict = hsts_verdict(https(replaced("strict-transport-security", "max-age=86400")), POLICY)
    assert verdict.outcome is Outcome.FAIL
    assert "max-age=86400 (policy: ≥ 31536000)" in verdict.message
    assert "without includeSubDomains" in verdict.message


def test_hsts_garbled_max_age_fails() -> None:
    verdict = hsts_verdict(https(replaced("strict-transport-security", "max-age=forever")), POLICY)
    assert verdict.outcome is Outcome.FAIL and "without a valid max-age" in verdict.message


@pytest.mark.parametrize(("value", "parsed"), [
    ("max-age=31536000; includeSubDomains; preload", (31536000, True, True)),
    ('MAX-AGE="600";INCLUDESUBDOMAINS', (600, True, False)),
    ("includeSubDomains", (None, True, False)),
    ("max-age=-1", (None, False, False)),
])
def test_parse_hsts(value: str, parsed: tuple[int | None, bool, bool]) -> None:
    assert parse_hsts(value) == parsed


@given(st.text(max_size=80))
def test_parse_hsts_never_crashes(value: str) -> None:
    max_age, _, _ = parse_hsts(value)
    assert max_age is None or max_age >= 0


# --- Against the real reference service -----------------------------------------------------

test_clean_reference_service_passes, test_fault_fails_the_check = integration_tests("transit.hsts", {
    "hsts-missing": "sends no Strict-Transport-Security",
    "hsts-short": "max-age=86400",
})
