"""Turning what happened in a check into one of the six outcomes, each with a reason.

A check that raised, timed out, was interrupted or ended without a verdict is ERROR, never
PASS; a current waiver turns a FAIL or ERROR into WAIVED and says so. Used by the pytest
plugin (:mod:`harness.plugin`) for each check and for run-level errors.
"""

from __future__ import annotations

import json
import time

import pytest

from harness.outcomes import CheckOutcome, Outcome, ProbeError, Verdict
from harness.results import CheckResult, WaiverNote
from harness.run_state import RunState, check_id_of, claims_of

#: What pytest is told of each outcome (its own summary and exit status follow these).
PYTEST_OUTCOME = {
    Outcome.PASS: "passed",
    Outcome.WAIVED: "passed",
    Outcome.FAIL: "failed",
    Outcome.ERROR: "failed",
    Outcome.NOT_APPLICABLE: "skipped",
    Outcome.MANUAL: "skipped",
}


def verdict_from_exception(excinfo: pytest.ExceptionInfo[BaseException], phase: str) -> Verdict:
    """The verdict of a check that raised ``excinfo`` during ``phase`` (setup, call, teardown)."""
    exc = excinfo.value
    if isinstance(exc, CheckOutcome):
        return exc.verdict
    if isinstance(exc, ProbeError):
        return Verdict.error(str(exc))
    if excinfo.errisinstance(pytest.skip.Exception):
        return Verdict.not_applicable(str(getattr(exc, "msg", exc)) or "skipped")
    # Anything else is a defect in the harness or a surprise from the target: it
    # could not verify, so ERROR, with the exception's type and first line.
    first_line = (str(exc).strip().splitlines() or [""])[0][:300]
    where = "while preparing the check" if phase == "setup" else "in the check"
    return Verdict.error(f"{type(exc).__name__} {where}: {first_line}".rstrip(": "))


def apply_waiver(state: RunState, check_id: str, verdict: Verdict) -> tuple[Verdict, WaiverNote | None]:
    """``verdict`` as the run's waivers leave it (WAIVED while a current waiver covers a FAIL or
    ERROR; an expired waiver said in the message), and the note that goes into results.json."""
    waiver = state.inputs.rules.waivers.for_check(check_id)
    if waiver is None:
        return verdict, None
    current = waiver.is_current(state.today)
    applies = current and verdict.outcome in (Outcome.FAIL, Outcome.ERROR)
    note = WaiverNote(applied=applies, original_outcome=verdict.outcome,
                      justification=waiver.justification, approved_by=waiver.approved_by,
                      expires=waiver.expires)
    if applies:
        outcome, said = Outcome.WAIVED, f"waived until {waiver.expires}: {waiver.justification}"
    elif not current:
        outcome, said = verdict.outcome, (f"a waiver for this check expired on {waiver.expires}; "
                                          f"evaluated normally")
    else:
        return verdict, note
    return verdict.model_copy(update={"outcome": outcome, "message": f"{verdict.message} ({said})"}), note


def finish_check(state: RunState, item: pytest.Item) -> CheckResult:
    """The result of ``item`` from its pending verdict (none: it did not run), waiver and evidence."""
    check_id = check_id_of(item)
    verdict = state.pending.pop(item.nodeid, None) or Verdict.error("the check did not run")
    verdict, waiver = apply_waiver(state, check_id, verdict)
    recorder = state.recorders.pop(item.nodeid, None)
    evidence = tuple(f"evidence/{check_id}/{name}" for name in (recorder.attachments if recorder else []))
    claims = claims_of(item)
    subject = f"/{verdict.subject}" if verdict.subject else ""
    # Details reach results.json, junit.xml, SARIF and the HTML report: redact them as a whole.
    details = json.loads(state.known_secrets.redact(json.dumps(verdict.details, default=str)))
    return CheckResult(
        finding_id=f"{check_id}/{'+'.join(claims)}{subject}",
        check_id=check_id,
        claims=claims,
        outcome=verdict.outcome,
        message=verdict.message,
        details=details,
        evidence=evidence,
        duration_s=round(time.monotonic() - state.started.pop(item.nodeid, time.monotonic()), 3),
        waiver=waiver,
    )


def run_error(state: RunState, finding_id: str, message: str) -> None:
    """A run-level ERROR that belongs to no check (a module that did not load, a failed clean-up)."""
    state.run_errors.append(CheckResult(
        finding_id=finding_id, check_id=finding_id.split("/", 1)[0], claims=(), outcome=Outcome.ERROR,
        message=state.known_secrets.redact(message)))


def verdict_of_phase(state: RunState, item: pytest.Item,
                     call: pytest.CallInfo[None]) -> Verdict | None:
    """The verdict one phase of ``item`` reached (None: this phase decides nothing).

    A failing teardown is recorded as a run-level ERROR of its own, whatever the check concluded.
    """
    if call.when == "setup":
        return verdict_from_exception(call.excinfo, "setup") if call.excinfo is not None else None
    if call.when == "call":
        if call.excinfo is not None:
            return verdict_from_exception(call.excinfo, "call")
        recorder = state.recorders.get(item.nodeid)
        verdict = recorder.verdict if recorder else None
        return verdict or Verdict.error("the check ended without reaching a verdict")
    if call.excinfo is not None:
        # A failing clean-up (e.g. canary removal) may leave harness data in the audited
        # system: its own finding, whatever the check concluded (a session fixture's
        # clean-up runs in the teardown of whichever check happens to be last).
        extra = verdict_from_exception(call.excinfo, "teardown")
        check_id = check_id_of(item)
        run_error(state, f"harness.cleanup/{check_id}",
                  f"clean-up after {check_id} failed: {extra.message} (the audited system may still "
                  f"hold harness data)")
    return None
