"""keys.token_key_rotation: its verdict on hand-made rotations under load."""

from __future__ import annotations

import pytest

from checks.keys.token_key_rotation import rotation_timeline, token_key_rotation_verdict
from harness.evidence_kinds import EVIDENCE_KIND, RotationTimelineEvidence
from harness.load import Attempt, LoadReport
from harness.outcomes import Outcome
from harness.probes.rotation import TokenRotationObservation

from .conftest import KILLED, POLICY, cmd
from .test_db_password_rotation import DB_DOWN_AFTER, DB_DOWN_BEFORE, HEALTHY, NOT_RUN_MESSAGE


def load(errors: int = 0, slow: bool = False) -> LoadReport:
    attempts = []
    for i in range(100):
        t = i * 0.1
        during = 3.0 <= t < 7.0
        failed = during and i % 10 == 0 and errors > 0
        attempts.append(Attempt(0, "sync", t, 0.5 if (slow and during) else 0.02, not failed,
                                None if failed else 200, "ConnectError" if failed else ""))
    return LoadReport(tuple(attempts), (("rotation started", 3.0), ("rotation finished", 7.0)), 10.0, 1)


def rotation(**changes) -> TokenRotationObservation:
    base = dict(command=cmd(), load=load(), ring_before=((1, "votriz/token-encryption/v1", "f1"),),
                ring_after=((2, "votriz/token-encryption/v2", "f2"),), rows_before=(1, 2, 3),
                rows_after=(1, 2, 3), undecryptable_after=(), readable_with_retired=(),
                canary_rows=3, canary_mismatches=(), writes_during_rotation=20, writes_checked=3)
    base.update(changes)
    return TokenRotationObservation(**base)


def test_rotation_passes() -> None:
    verdict = token_key_rotation_verdict(rotation(), POLICY)
    assert verdict.outcome is Outcome.PASS
    assert verdict.message.startswith("Token key rotated to v2 in 4.0 s under load: 100 requests, 0 failed")


def test_slower_answers_during_rotation_are_evidence_not_an_interruption() -> None:
    # Given a rotation during which the p99 latency rose 25-fold but nothing failed
    verdict = token_key_rotation_verdict(rotation(load=load(slow=True)), POLICY)
    # Then the promise (no interruption) holds, and the slowdown is in the evidence
    assert verdict.outcome is Outcome.PASS
    assert "p99 20.0 ms before, 500.0 ms during" in verdict.message
    assert verdict.details["p99_ratio_during_over_before"] == 25.0


@pytest.mark.parametrize(("changes", "message"), [
    ({"load": load(errors=1)}, "4 of 100 requests failed during the rotation window (4 without any answer"),
    ({"undecryptable_after": (3,), "load": load(errors=1)},
     "1 channels rows are not readable with the new key ring (e.g. ids 3); 4 of 100 requests failed"),
    ({"command": cmd(rc=1)}, "The rotation command failed: rotate exited 1"),
    ({"ring_after": ((1, "votriz/token-encryption/v1", "f1"),)}, "The rotation added no new token-encryption key to the HSM."),
    ({"undecryptable_after": (3,)}, "1 channels rows are not readable with the new key ring (e.g. ids 3)"),
    ({"readable_with_retired": (3,)}, "1 channels rows are still encrypted under the retired key"),
    ({"rows_after": (1, 2)}, "1 channels rows disappeared during the rotation"),
    ({"canary_mismatches": (2,)}, "1 canary channels hold other tokens than the last ones stored"),
])
def test_rotation_fails(changes: dict, message: str) -> None:
    verdict = token_key_rotation_verdict(rotation(**changes), POLICY)
    assert verdict.outcome is Outcome.FAIL
    assert message in verdict.message


def test_a_rotation_killed_by_the_harness_timeout_is_error_not_fail() -> None:
    # Given a rotation command the harness killed after its 30 s limit
    verdict = token_key_rotation_verdict(rotation(command=KILLED), POLICY)
    # Then the check could not finish: ERROR saying so, never FAIL
    assert verdict.outcome is Outcome.ERROR
    assert verdict.message == ("The rotation command rotate did not finish within 30 s (killed by "
                               "the harness's timeout), so the rotation could not be judged.")
    # And a command that ran and exited non-zero still fails
    failed = token_key_rotation_verdict(rotation(command=cmd(rc=1)), POLICY)
    assert failed.outcome is Outcome.FAIL
    assert failed.message.startswith("The rotation command failed: rotate exited 1 after 4.0 s")


def test_a_harness_defect_in_the_load_makes_the_rotation_error_not_fail() -> None:
    # Given a load whose call code raised a TypeError (the harness's own bug)
    report = load()
    broken = LoadReport(report.attempts, report.markers, report.duration_s, 1,
                        ("worker 0: TypeError at harness/probes/channel_load.py:900",))
    verdict = token_key_rotation_verdict(rotation(load=broken), POLICY)
    # Then the check ends ERROR naming the defect, never FAIL
    assert verdict.outcome is Outcome.ERROR
    assert verdict.message == ("The harness's load generator hit a defect in its own code (not a "
                               "failed request of the service): worker 0: TypeError at "
                               "harness/probes/channel_load.py:900.")
    # And failed requests of the service still fail the rotation
    assert token_key_rotation_verdict(rotation(load=load(errors=1)), POLICY).outcome is Outcome.FAIL


# --- the service's health around the rotation, and its timeline evidence ----------------------


def test_rotation_failing_while_healthy_stays_fail() -> None:
    # (a) Healthy before and after: failed requests during the rotation are a broken promise
    verdict = token_key_rotation_verdict(rotation(load=load(errors=1), health=HEALTHY), POLICY)
    assert verdict.outcome is Outcome.FAIL
    assert verdict.message.startswith("4 of 100 requests failed during the rotation window")


def test_rotation_failing_with_the_database_down_after_it_is_error_naming_it() -> None:
    # (b) Requests failed and the database did not answer right after: the rows were not read
    verdict = token_key_rotation_verdict(rotation(load=load(errors=1), health=DB_DOWN_AFTER,
                                                  read_after=False, ring_after=(), rows_after=()),
                                         POLICY)
    assert verdict.outcome is Outcome.ERROR
    assert verdict.message == (
        "The database was unavailable right after the token-key rotation (127.0.0.1:5432: no answer "
        "within 2 s, at 05:12:03 UTC), which explains what failed: 4 of 100 requests failed during the rotation window (4 without any answer: 4 x ConnectError); the key "
        "ring and the channels rows could not be read after it. Not judged as a broken promise.")
    assert verdict.details["read_after"] is False and verdict.details["rows_after"] is None


def test_rotation_not_run_because_of_an_outage_is_error() -> None:
    # (c) Unhealthy before: not run
    obs = TokenRotationObservation.not_run(("rotate",), DB_DOWN_BEFORE)
    verdict = token_key_rotation_verdict(obs, POLICY)
    assert (verdict.outcome, verdict.message) == (Outcome.ERROR, NOT_RUN_MESSAGE)


def test_the_timeline_is_typed_rotation_evidence() -> None:
    evidence = rotation_timeline(load(errors=1))
    assert isinstance(evidence, RotationTimelineEvidence) and evidence.kind == "rotation_timeline"
    assert evidence.bucket_s == 0.5 and len(evidence.timeline) == 20
    assert evidence.timeline[6].markers == ("rotation started",)
    assert evidence.during is not None and evidence.during["errors"] == 4
    dumped = EVIDENCE_KIND.validate_python(evidence.model_dump(mode="json"))
    assert dumped.kind == "rotation_timeline"


def test_rotation_killed_with_the_database_down_is_error_naming_the_database() -> None:
    verdict = token_key_rotation_verdict(rotation(command=KILLED, health=DB_DOWN_AFTER, read_after=False),
                                         POLICY)
    assert verdict.outcome is Outcome.ERROR
    assert verdict.message.startswith("The database was unavailable right after the token-key rotation")
    assert "the rotation command: rotate did not finish within 30 s" in verdict.message
