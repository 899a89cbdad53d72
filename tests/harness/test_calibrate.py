"""fixtures/calibration.toml, the auditor's side of calibration, against the fault and violation
registries; and calibrate() on a stand-in backend (which stack, which violation, which rows)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from harness import calibrate as calibrate_module
from harness.calibrate import (
    CLEAN,
    Expectation,
    ViolationExpectation,
    calibrate,
    load_expectations,
    load_violation_expectations,
)
from harness.checkdir import declared_checks
from system_under_test.faults import FAULTS
from system_under_test.violations import VIOLATIONS


@pytest.mark.parametrize(("load", "registry", "repeated"),
                         [(load_expectations, FAULTS, "claims"),
                          (load_violation_expectations, VIOLATIONS, "description")],
                         ids=["faults", "violations"])
def test_calibration_and_the_registry_name_the_same_entries(load: Any, registry: dict[str, Any],
                                                            repeated: str) -> None:
    expectations = load()
    assert sorted(expectations) == sorted(registry)
    for name, expectation in expectations.items():
        # What the calibration repeats from the registry (a fault's claims, a violation's
        # description) is the registry's.
        assert getattr(expectation, repeated) == getattr(registry[name], repeated), name
        assert expectation.checks, f"{name}: no check is expected to catch it"
        assert expectation.claims, f"{name}: breaks no claim"


def test_calibration_lists_the_faults_in_the_registry_order() -> None:
    assert list(load_expectations()) == list(FAULTS)


@pytest.mark.parametrize("load", [load_expectations, load_violation_expectations],
                         ids=["faults", "violations"])
def test_every_check_named_exists_and_verifies_the_claims_broken(load: Any) -> None:
    declared = declared_checks()
    for name, expectation in load().items():
        for check in expectation.checks:
            assert check in declared, f"{name}: unknown check {check}"
        # Each claim the fault or violation breaks is verified by one of the checks expected to catch it.
        claims = {claim for check in expectation.checks for claim in declared[check].claims}
        assert set(expectation.claims) <= claims, name


def test_load_violation_expectations_reads_an_absent_table_as_none(tmp_path: Path) -> None:
    path = tmp_path / "calibration.toml"
    path.write_text('[faults.a]\nchecks = ["transit.hsts"]\nclaims = ["TRANSIT-HSTS"]\n')
    assert load_violation_expectations(path) == {}


class Failing(Exception):
    pass


FAULT = SimpleNamespace(name="hsts-missing", claims=("TRANSIT-HSTS",), description="No HSTS.",
                        backends=("local",))
VIOLATION = SimpleNamespace(name="edge-reload-tls12", description="TLS 1.2 after a reload.",
                            backends=("local",))
EXPECTATIONS = {"hsts-missing": Expectation("hsts-missing", ("transit.hsts",), ("TRANSIT-HSTS",))}
VIOLATION_EXPECTATIONS = {"edge-reload-tls12": ViolationExpectation(
    "edge-reload-tls12", ("transit.tls_versions",), ("TRANSIT-TLS13",), "TLS 1.2 after a reload.")}


def stand_in(calls: list[tuple[str, ...]], *, up_fails: bool = False) -> SimpleNamespace:
    """A backend that records up, apply_violation and down in order."""

    def up(state_dir: Path, faults: tuple[str, ...]) -> SimpleNamespace:
        calls.append(("up", state_dir.name, *faults))
        if up_fails:
            raise Failing("no engine")
        return SimpleNamespace(profile_path=state_dir / "target.toml")

    def apply_violation(state_dir: Path, name: str) -> None:
        calls.append(("apply", state_dir.name, name))

    return SimpleNamespace(name="local", StackError=Failing, up=up, apply_violation=apply_violation,
                           down=lambda state_dir: calls.append(("down", state_dir.name)),
                           faults=lambda: (FAULT,), violations=lambda: (VIOLATION,))


def test_calibrate_expects_the_toml_s_checks_and_records_a_stack_that_did_not_start(tmp_path) -> None:
    said: list[str] = []
    calibration = calibrate(tmp_path, stand_in([], up_fails=True), violations=(), say=said.append,
                            expectations=EXPECTATIONS)
    assert [(r.fault, r.expected_check, r.expected_outcome.value, r.observed_outcome) for r in calibration.rows] == [
        (CLEAN, "transit.hsts", "PASS", None), ("hsts-missing", "transit.hsts", "FAIL", None)]
    assert "calibrate: hsts-missing: could not run: no engine" in said
    assert (tmp_path / "calibration.json").exists()


def fake_audit(outcomes_by_run: dict[str, dict[str, str]], audited: list[tuple[str, list[str]]]):
    def audit(profile: Path, report_dir: Path, areas: list[str], timeout_s: float) -> dict[str, Any]:
        audited.append((report_dir.name, list(areas)))
        outcomes = outcomes_by_run[report_dir.name]
        return {"run_id": f"run-{report_dir.name}",
                "results": [{"check_id": check, "outcome": outcome} for check, outcome in outcomes.items()]}

    return audit


def test_a_violation_is_applied_to_a_clean_stack_after_up_and_before_its_audit(tmp_path, monkeypatch) -> None:
    # Given a backend with one fault and one violation, and audits that detect both
    calls: list[tuple[str, ...]] = []
    audited: list[tuple[str, list[str]]] = []
    monkeypatch.setattr(calibrate_module, "_audit", fake_audit({
        CLEAN: {"transit.hsts": "PASS", "transit.tls_versions": "PASS"},
        "hsts-missing": {"transit.hsts": "FAIL"},
        "violation-edge-reload-tls12": {"transit.tls_versions": "FAIL", "transit.certificate": "FAIL"},
    }, audited))
    # When calibrate runs with no selection
    calibration = calibrate(tmp_path, stand_in(calls), say=lambda _: None, expectations=EXPECTATIONS,
                            violation_expectations=VIOLATION_EXPECTATIONS)
    # Then the violation's stack came up with no fault, was broken, audited, and taken down
    assert calls[-3:] == [("up", "violation-edge-reload-tls12"),
                          ("apply", "violation-edge-reload-tls12", "edge-reload-tls12"),
                          ("down", "violation-edge-reload-tls12")]
    assert ("up", "hsts-missing", "hsts-missing") in calls and ("up", CLEAN) in calls
    assert audited == [(CLEAN, []), ("hsts-missing", ["transit"]),
                       ("violation-edge-reload-tls12", ["transit"])]
    # And the rows say which kind each is, what was expected and what else failed
    assert [(r.kind, r.fault, r.expected_check, r.expected_outcome.value, r.detected)
            for r in calibration.rows] == [
        ("clean", CLEAN, "transit.hsts", "PASS", True),
        ("clean", CLEAN, "transit.tls_versions", "PASS", True),
        ("fault", "hsts-missing", "transit.hsts", "FAIL", True),
        ("violation", "edge-reload-tls12", "transit.tls_versions", "FAIL", True)]
    violation_row = calibration.of_kind("violation")[0]
    assert violation_row.claims == ("TRANSIT-TLS13",)
    assert violation_row.description == "TLS 1.2 after a reload."
    assert violation_row.other_failures == ("transit.certificate",)
    assert [row.fault for row in calibration.unexpected_failures] == ["edge-reload-tls12"]


def test_selecting_only_violations_runs_no_fault_and_a_missed_violation_is_recorded(tmp_path, monkeypatch) -> None:
    calls: list[tuple[str, ...]] = []
    monkeypatch.setattr(calibrate_module, "_audit", fake_audit({
        CLEAN: {"transit.tls_versions": "PASS"},
        "violation-edge-reload-tls12": {"transit.tls_versions": "PASS"}}, []))
    calibration = calibrate(tmp_path, stand_in(calls), faults=[], violations=["edge-reload-tls12"],
                            say=lambda _: None, expectations=EXPECTATIONS,
                            violation_expectations=VIOLATION_EXPECTATIONS)
    assert [call[1] for call in calls if call[0] == "up"] == [CLEAN, "violation-edge-reload-tls12"]
    assert [(r.fault, r.detected) for r in calibration.missed] == [("edge-reload-tls12", False)]


def test_a_violation_the_backend_cannot_apply_or_calibration_does_not_know_is_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"cannot apply violation.*no-such"):
        calibrate(tmp_path, stand_in([]), faults=[], violations=["no-such"], say=lambda _: None,
                  expectations=EXPECTATIONS, violation_expectations=VIOLATION_EXPECTATIONS)
    with pytest.raises(ValueError, match=r"no \[violations.edge-reload-tls12\] table"):
        calibrate(tmp_path, stand_in([]), faults=[], say=lambda _: None,
                  expectations=EXPECTATIONS, violation_expectations={})


def test_a_violation_that_could_not_be_applied_is_not_audited(tmp_path, monkeypatch) -> None:
    calls: list[tuple[str, ...]] = []
    audited: list[tuple[str, list[str]]] = []
    monkeypatch.setattr(calibrate_module, "_audit", fake_audit({CLEAN: {}}, audited))
    backend = stand_in(calls)

    def refuse(state_dir: Path, name: str) -> None:
        raise Failing(f"violation {name} not applied: no channel row")

    backend.apply_violation = refuse
    said: list[str] = []
    calibration = calibrate(tmp_path, backend, faults=[], say=said.append, expectations=EXPECTATIONS,
                            violation_expectations=VIOLATION_EXPECTATIONS)
    assert [name for name, _ in audited] == [CLEAN]
    assert calls[-1] == ("down", "violation-edge-reload-tls12")
    assert calibration.of_kind("violation")[0].observed_outcome is None
    assert any("could not run: violation edge-reload-tls12 not applied" in line for line in said)


def test_cli_calibrate_refuses_an_unknown_violation(monkeypatch, capsys) -> None:
    from harness import cli

    monkeypatch.setattr(cli, "_backends", lambda: {"local": stand_in([])})
    assert cli.main(["calibrate", "--backend", "local", "--violation", "no-such"]) == cli.EXIT_USAGE
    assert "no violation no-such" in capsys.readouterr().err


def test_cli_calibrate_leaves_the_state_directories_reachable_by_the_service_user(
        tmp_path, monkeypatch) -> None:
    # The local backend runs PostgreSQL and nginx as an unprivileged user, whose state
    # directories sit under OUT/state: OUT must be traversable (0755), while each run's
    # evidence under OUT/runs stays private (the plugin makes it 0700).
    from harness import calibrate as calibrate_module
    from harness import cli

    seen: dict[str, int] = {}

    def fake_calibrate(out_dir: Path, stack, faults, violations):
        seen["mode"] = out_dir.stat().st_mode & 0o777
        raise cli.UsageError("stop here")

    monkeypatch.setattr(cli, "_backends", lambda: {"local": stand_in([])})
    monkeypatch.setattr(calibrate_module, "calibrate", fake_calibrate)
    out = tmp_path / "calibration"
    assert cli.main(["calibrate", "--backend", "local", "--out", str(out)]) == cli.EXIT_USAGE
    assert seen["mode"] == 0o755
