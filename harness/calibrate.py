"""Calibration: proof that the checks can fail.

For each fault of the reference service, stand the service up with that fault
on, audit the areas of the checks expected to catch it, and record what those
checks concluded and which other checks failed. For each violation, stand a
clean service up, break it while it runs (the backend's ``apply_violation``:
a row edited, a file planted, an HSM object created, a configuration
reloaded), then audit and record the same way. A clean run is calibrated the
same way (every check expected to PASS). Each audit runs in its own process
(as a release pipeline would run it), so no state leaks from one to the next.

Which checks must catch which fault or violation is data:
``fixtures/calibration.toml`` (:func:`load_expectations`,
:func:`load_violation_expectations`). The reference service's registries name
no check; its backends come through ``harness.reference``.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.bundled import bundled
from harness.outcomes import Outcome
from harness.reference import ReferenceBackend
from harness.report.calibration import Calibration, DetectionRow, RowKind

CLEAN = "clean"
CALIBRATION_FILE = bundled("calibration.toml")


@dataclass(frozen=True)
class Expectation:
    """What calibration expects of one fault.

    Attributes:
        fault: the fault's name.
        checks: ids of the checks expected to FAIL with it on.
        claims: ids of the claims it breaks (the fault registry says the same).
    """

    fault: str
    checks: tuple[str, ...]
    claims: tuple[str, ...]


@dataclass(frozen=True)
class ViolationExpectation:
    """What calibration expects of one violation applied to the running service.

    Attributes:
        name: the violation's name.
        checks: ids of the checks expected to FAIL once it is applied.
        claims: ids of the claims it breaks.
        description: what is done to the running service (the registry says the same).
    """

    name: str
    checks: tuple[str, ...]
    claims: tuple[str, ...]
    description: str


def load_expectations(path: Path = CALIBRATION_FILE) -> dict[str, Expectation]:
    """Fault name → :class:`Expectation`, from ``fixtures/calibration.toml``, in the file's order."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    return {name: Expectation(fault=name, checks=tuple(entry["checks"]), claims=tuple(entry["claims"]))
            for name, entry in data["faults"].items()}


def load_violation_expectations(path: Path = CALIBRATION_FILE) -> dict[str, ViolationExpectation]:
    """Violation name → :class:`ViolationExpectation` (the ``[violations.*]`` tables), in the file's order."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    return {name: ViolationExpectation(name=name, checks=tuple(entry["checks"]),
                                       claims=tuple(entry["claims"]),
                                       description=str(entry.get("description", "")))
            for name, entry in data.get("violations", {}).items()}


@dataclass(frozen=True)
class _Case:
    # One stand-up to calibrate: the clean service, a fault at start-up, or a violation after it.
    kind: RowKind
    name: str
    description: str
    claims: tuple[str, ...]
    checks: tuple[str, ...]

    @property
    def faults(self) -> tuple[str, ...]:
        return (self.name,) if self.kind == "fault" else ()


def _areas(checks: Sequence[str]) -> list[str]:
    return sorted({check.split(".", 1)[0] for check in checks})


def _audit(profile: Path, report_dir: Path, areas: Sequence[str], timeout_s: float) -> dict[str, Any]:
    args = [sys.executable, "-m", "harness", "run", "--target", str(profile), "--report-dir", str(report_dir)]
    for area in areas:
        args += ["--only", area]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout_s, check=False)
    results = report_dir / "results.json"
    if not results.exists():
        raise RuntimeError(f"the audit wrote no results (exit {proc.returncode}): "
                           f"{(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")
    data: dict[str, Any] = json.loads(results.read_text(encoding="utf-8"))
    return data


def calibrate(out_dir: Path, stack: ReferenceBackend, faults: Sequence[str] | None = None,
              violations: Sequence[str] | None = None, *,
              timeout_s: float = 1800.0, say: Callable[[str], None] = print,
              expectations: dict[str, Expectation] | None = None,
              violation_expectations: dict[str, ViolationExpectation] | None = None) -> Calibration:
    """Run the clean service, each fault and each violation; write ``out_dir/calibration.json``.

    Args:
        out_dir: where runs (``runs/<fault>/``, ``runs/violation-<name>/``), states and
            calibration.json go.
        stack: the reference service's backend (``up``, ``down``, ``StackError``, ``faults()``,
            ``violations()``, ``apply_violation``).
        faults: the faults to calibrate; None: every fault the backend can apply.
        violations: the violations to calibrate; None: every violation the backend can apply.
        expectations: the checks each fault must make FAIL (default: ``fixtures/calibration.toml``).
        violation_expectations: the same for each violation (default: that file's ``[violations.*]``).
    """
    expected_of = expectations if expectations is not None else load_expectations()
    violation_expected_of = (violation_expectations if violation_expectations is not None
                             else load_violation_expectations())
    applicable = {fault.name: fault for fault in stack.faults()}
    cases = [_Case("fault", fault.name, fault.description, fault.claims, expected_of[fault.name].checks)
             for fault in ([applicable[name] for name in faults] if faults is not None
                           else applicable.values())]
    if violations is None or violations:
        offered = {violation.name: violation for violation in stack.violations()}
        unknown = [name for name in violations or () if name not in offered]
        if unknown:
            raise ValueError(f"the {stack.name} backend cannot apply violation(s) {', '.join(unknown)}")
        for name in (violations if violations is not None else list(offered)):
            if name not in violation_expected_of:
                raise ValueError(f"violation {name} has no [violations.{name}] table in calibration.toml")
            expected = violation_expected_of[name]
            cases.append(_Case("violation", name, offered[name].description, expected.claims,
                               expected.checks))
    expected_by_clean = tuple(sorted({check for case in cases for check in case.checks}))
    clean = _Case("clean", CLEAN, "the service with no fault", (), expected_by_clean)
    rows: list[DetectionRow] = []
    for case in [clean, *cases]:
        rows += _calibrate_one(out_dir, stack, case, timeout_s, say)
    calibration = Calibration(created_at=dt.datetime.now(dt.UTC), rows=tuple(rows))
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "calibration.json").write_text(calibration.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return calibration


def _calibrate_one(out_dir: Path, stack: ReferenceBackend, case: _Case, timeout_s: float,
                   say: Callable[[str], None]) -> list[DetectionRow]:
    # A violation's directories are apart from the faults' (one may share a fault's name).
    label = f"violation-{case.name}" if case.kind == "violation" else case.name
    state_dir = out_dir / "state" / label
    report_dir = out_dir / "runs" / label
    say(f"calibrate: {label} ...")
    try:
        info = stack.up(state_dir, case.faults)
        try:
            if case.kind == "violation":
                # Applied to the service as it runs, before the audit looks at anything.
                stack.apply_violation(state_dir, case.name)
            data = _audit(info.profile_path, report_dir,
                          _areas(case.checks) if case.kind != "clean" else [], timeout_s)
        finally:
            stack.down(state_dir)
    except (stack.StackError, RuntimeError, subprocess.TimeoutExpired) as exc:
        say(f"calibrate: {label}: could not run: {exc}")
        data = {"results": [], "run_id": None}
    outcomes = {r["check_id"]: Outcome(r["outcome"]) for r in data["results"]}
    others = tuple(sorted(check for check, outcome in outcomes.items()
                          if outcome is Outcome.FAIL and check not in case.checks))
    rows = [DetectionRow(fault=case.name, kind=case.kind, description=case.description,
                         claims=case.claims, expected_check=check,
                         expected_outcome=Outcome.PASS if case.kind == "clean" else Outcome.FAIL,
                         observed_outcome=outcomes.get(check), run_id=data.get("run_id"),
                         other_failures=others)
            for check in case.checks]
    missed = [row.expected_check for row in rows if not row.detected]
    say(f"calibrate: {label}: " + (f"MISSED by {', '.join(missed)}" if missed else "detected")
        + (f"; also failed: {', '.join(others)}" if others else ""))
    return rows
