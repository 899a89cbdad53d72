"""Calibration: proof that the checks can fail.

For each fault of the reference service, stand the service up with that fault
on, audit the areas of the checks expected to catch it, and record what those
checks concluded and which other checks failed. A clean run is calibrated the
same way (every check expected to PASS). Each audit runs in its own process
(as a release pipeline would run it), so no state leaks from one to the next.

Which checks must catch which fault is data: ``fixtures/calibration.toml``
(:func:`load_expectations`). The reference service's fault registry names no
check; its backends come through ``harness.reference``.
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

from harness.outcomes import Outcome
from harness.reference import ReferenceBackend, ReferenceFault
from harness.report.calibration import Calibration, DetectionRow

CLEAN = "clean"
CALIBRATION_FILE = Path(__file__).resolve().parent.parent / "fixtures" / "calibration.toml"


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


def load_expectations(path: Path = CALIBRATION_FILE) -> dict[str, Expectation]:
    """Fault name → :class:`Expectation`, from ``fixtures/calibration.toml``, in the file's order."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    return {name: Expectation(fault=name, checks=tuple(entry["checks"]), claims=tuple(entry["claims"]))
            for name, entry in data["faults"].items()}


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


def calibrate(out_dir: Path, stack: ReferenceBackend, faults: Sequence[str] = (), *,
              timeout_s: float = 1800.0, say: Callable[[str], None] = print,
              expectations: dict[str, Expectation] | None = None) -> Calibration:
    """Run the clean service and each fault; write ``out_dir/calibration.json`` and every run's report.

    Args:
        out_dir: where runs (``runs/<fault>/``), states and calibration.json go.
        stack: the reference service's backend (``up``, ``down``, ``StackError``, ``faults()``).
        faults: the faults to calibrate (default: every fault the backend can apply).
        expectations: the checks each fault must make FAIL (default: ``fixtures/calibration.toml``).
    """
    expected_of = expectations if expectations is not None else load_expectations()
    applicable = {fault.name: fault for fault in stack.faults()}
    chosen: list[ReferenceFault] = ([applicable[name] for name in faults] if faults
                                    else list(applicable.values()))
    expected_by_clean = sorted({check for fault in chosen for check in expected_of[fault.name].checks})
    rows: list[DetectionRow] = []
    for fault in [None, *chosen]:
        label = fault.name if fault else CLEAN
        state_dir = out_dir / "state" / label
        report_dir = out_dir / "runs" / label
        say(f"calibrate: {label} ...")
        try:
            info = stack.up(state_dir, (fault.name,) if fault else ())
            try:
                data = _audit(info.profile_path, report_dir,
                              _areas(expected_of[fault.name].checks) if fault else [], timeout_s)
            finally:
                stack.down(state_dir)
        except (stack.StackError, RuntimeError, subprocess.TimeoutExpired) as exc:
            say(f"calibrate: {label}: could not run: {exc}")
            data = {"results": [], "run_id": None}
        outcomes = {r["check_id"]: Outcome(r["outcome"]) for r in data["results"]}
        expected = expected_of[fault.name].checks if fault else tuple(expected_by_clean)
        others = tuple(sorted(check for check, outcome in outcomes.items()
                              if outcome is Outcome.FAIL and check not in expected))
        for check in expected:
            rows.append(DetectionRow(
                fault=label, description=fault.description if fault else "the service with no fault",
                claims=fault.claims if fault else (), expected_check=check,
                expected_outcome=Outcome.FAIL if fault else Outcome.PASS,
                observed_outcome=outcomes.get(check), run_id=data.get("run_id"), other_failures=others))
        missed = [row.expected_check for row in rows[-len(expected):] if not row.detected]
        say(f"calibrate: {label}: " + (f"MISSED by {', '.join(missed)}" if missed else "detected")
            + (f"; also failed: {', '.join(others)}" if others else ""))
    calibration = Calibration(created_at=dt.datetime.now(dt.UTC), rows=tuple(rows))
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "calibration.json").write_text(calibration.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return calibration
