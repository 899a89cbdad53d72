"""fixtures/calibration.toml, the auditor's side of calibration, against the fault registry."""

from __future__ import annotations

from harness.calibrate import load_expectations
from harness.checkdir import declared_checks
from system_under_test.faults import FAULTS


def test_calibration_and_the_fault_registry_name_the_same_faults_and_claims() -> None:
    expectations = load_expectations()
    assert list(expectations) == list(FAULTS)
    for name, expectation in expectations.items():
        assert expectation.claims == FAULTS[name].claims, name
        assert expectation.checks, f"{name}: no check is expected to catch it"


def test_every_check_named_exists_and_names_the_fault_s_claims() -> None:
    declared = declared_checks()
    for name, expectation in load_expectations().items():
        for check in expectation.checks:
            assert check in declared, f"{name}: unknown check {check}"
        # Each claim the fault breaks is verified by one of the checks expected to catch it.
        claims = {claim for check in expectation.checks for claim in declared[check].claims}
        assert set(expectation.claims) <= claims, name
