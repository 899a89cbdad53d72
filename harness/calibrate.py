"""Calibration: proof that the checks can fail.

For each fault of the reference service, stand the service up with that fault
on, audit the areas of the checks expected to catch it, and record what those
checks concluded and which other checks failed. A clean run is calibrated the
same way (every check expected to PASS). Each audit runs in its own process
(as a release pipeline would run it), so no state leaks from one to the next.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from harness.outcomes import Outcome
from harness.report.calibration import Calibration, DetectionRow
from system_under_test.faults import FAULTS, Fault

CLEAN = "clean"


def _areas(fault: Fault | None) -> list[str]:
    if fault is None:
        return []
    return sorted({check.split(".", 1)[0] for check in fault.checks})


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


def calibrate(out_dir: Path, stack: Any, backend: str, faults: Sequence[str] = (), *,
              timeout_s: float = 1800.0, say: Callable[[str], None] = print) -> Calibration:
    """Run the clean service and each fault; write ``out_dir/calibration.json`` and every run's report.

    Args:
        out_dir: where runs (``runs/<fault>/``), states and calibration.json go.
        stack: the backend module (``up``, ``down``, ``StackError``).
        backend: its name, to skip faults that do not apply to it.
        faults: the faults to calibrate (default: every fault of the backend).
    """
    chosen = [FAULTS[name] for name in faults] if faults else [
        fault for fault in FAULTS.values() if backend in fault.backends]
    expected_by_clean = sorted({check for fault in chosen for check in fault.checks})
    rows: list[DetectionRow] = []
    for fault in [None, *chosen]:
        label = fault.name if fault else CLEAN
        state_dir = out_dir / "state" / label
        report_dir = out_dir / "runs" / label
        say(f"calibrate: {label} ...")
        try:
            info = stack.up(state_dir, (fault.name,) if fault else ())
            try:
                data = _audit(info.profile_path, report_dir, _areas(fault), timeout_s)
            finally:
                stack.down(state_dir)
        except (stack.StackError, RuntimeError, subprocess.TimeoutExpired) as exc:
            say(f"calibrate: {label}: could not run: {exc}")
            data = {"results": [], "run_id": None}
        outcomes = {r["check_id"]: Outcome(r["outcome"]) for r in data["results"]}
        expected = fault.checks if fault else tuple(expected_by_clean)
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
