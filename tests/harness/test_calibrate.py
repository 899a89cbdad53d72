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


def test_calibrate_expects_the_toml_s_checks_and_records_a_stack_that_did_not_start(tmp_path) -> None:
    from types import SimpleNamespace

    from harness.calibrate import CLEAN, Expectation, calibrate

    class Failing(Exception):
        pass

    def up(state_dir, faults):
        raise Failing("no engine")

    fault = SimpleNamespace(name="hsts-missing", claims=("TRANSIT-HSTS",), description="No HSTS.",
                            backends=("local",))
    stack = SimpleNamespace(StackError=Failing, up=up, down=lambda state_dir: None, faults=lambda: (fault,))
    said: list[str] = []
    expectations = {"hsts-missing": Expectation("hsts-missing", ("transit.hsts",), ("TRANSIT-HSTS",))}
    calibration = calibrate(tmp_path, stack, say=said.append, expectations=expectations)
    assert [(r.fault, r.expected_check, r.expected_outcome.value, r.observed_outcome) for r in calibration.rows] == [
        (CLEAN, "transit.hsts", "PASS", None), ("hsts-missing", "transit.hsts", "FAIL", None)]
    assert "calibrate: hsts-missing: could not run: no engine" in said
    assert (tmp_path / "calibration.json").exists()
