"""The in-transit area as a whole: each check's claims, and each fault's checks."""

from __future__ import annotations

import pytest

from system_under_test.faults import FAULTS

from .conftest import CHECKS, TRANSIT_FAULTS, checks_expected_to_fail, claims_of


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
