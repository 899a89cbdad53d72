"""The in-transit area as a whole: each check's claims, and each fault's checks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from checks.transit.hsts import hsts_verdict
from checks.transit.security_headers import security_headers_verdict
from harness.outcomes import Outcome, Verdict
from system_under_test.faults import FAULTS

from .conftest import (
    CHECKS,
    GATEWAY_MESSAGE,
    POLICY,
    TRANSIT_FAULTS,
    checks_expected_to_fail,
    claims_of,
    gateway_errors_only,
)


def test_every_check_claims_what_the_catalogue_maps_to_it() -> None:
    from harness.claims import load_catalogue

    catalogue = load_catalogue()
    for check_id, check in CHECKS.items():
        marked = {c for m in check.pytestmark if m.name == "claims" for c in m.args}
        mapped = {claim.id for claim in catalogue.claim if check_id in claim.checks}
        assert marked == mapped, check_id


@pytest.mark.integration
def test_every_transit_fault_names_a_transit_check_that_claims_it() -> None:
    for name in TRANSIT_FAULTS:
        for check_id in checks_expected_to_fail(name):
            assert check_id in CHECKS, f"{name}: no check {check_id}"
            assert set(FAULTS[name].claims) <= set(claims_of(CHECKS[check_id])), name


@pytest.mark.parametrize("verdict_of", [hsts_verdict, security_headers_verdict],
                         ids=["hsts", "security_headers"])
def test_only_gateway_errors_sampled_is_error_not_pass(verdict_of: Callable[..., Verdict]) -> None:
    # Given an edge whose upstream is down: every sample is its own 502/504 page, headers intact
    verdict = verdict_of(gateway_errors_only(), POLICY)
    # Then nothing about the service's own responses was seen: could not verify
    assert verdict.outcome is Outcome.ERROR
    assert verdict.message == GATEWAY_MESSAGE


@pytest.mark.parametrize(("verdict_of", "lacks"), [(hsts_verdict, "sends no Strict-Transport-Security"),
                                                   (security_headers_verdict, "lacks")],
                         ids=["hsts", "security_headers"])
def test_bare_gateway_error_pages_are_error_not_fail(verdict_of: Callable[..., Verdict], lacks: str) -> None:
    # Given an edge whose upstream adds the headers and is down: every sample is a bare 502/504
    bare = gateway_errors_only()
    bare = replace(bare, samples=tuple(replace(s, headers=()) for s in bare.samples))
    verdict = verdict_of(bare, POLICY)
    # Then the service was only down: ERROR, saying what the error pages lacked
    assert verdict.outcome is Outcome.ERROR, verdict.message
    assert verdict.message.startswith(GATEWAY_MESSAGE + " (The error pages themselves: /")
    assert lacks in verdict.message
