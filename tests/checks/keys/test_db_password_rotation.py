"""keys.db_password_rotation (and keys.redis_password_rotation, judged alike): the password
rotation verdict on hand-made observations."""

from __future__ import annotations

import pytest

from checks.keys.db_password_rotation import password_rotation_verdict
from harness.outcomes import Outcome
from harness.probes.rotation import PasswordRotationObservation

from .conftest import KILLED, cmd


def pw(**changes) -> PasswordRotationObservation:
    base = dict(what="database", command=cmd(), old_accepted_before="", old_after="refused",
                new_after="accepted", changed_in_hsm=True, service_after="")
    base.update(changes)
    return PasswordRotationObservation(**base)


def test_password_rotation_both_sides() -> None:
    ok = password_rotation_verdict(pw())
    assert ok.outcome is Outcome.PASS
    assert ok.message == ("After the rotation the old database password is refused, the new one from "
                          "the HSM works, and the service still works (4.0 s).")
    kept = password_rotation_verdict(pw(old_after="accepted"))
    assert (kept.outcome, kept.message) == (Outcome.FAIL,
                                            "The old database password still works after the rotation.")
    down = password_rotation_verdict(pw(service_after="GET /brands: expected HTTP 200, got 500"))
    assert down.outcome is Outcome.FAIL and "does not work after" in down.message
    assert password_rotation_verdict(pw(old_after="connection failed: x")).outcome is Outcome.ERROR
    assert password_rotation_verdict(pw(old_accepted_before="refused")).outcome is Outcome.ERROR


def test_password_rotation_fails_when_the_hsm_value_did_not_change() -> None:
    verdict = password_rotation_verdict(pw(changed_in_hsm=False))
    assert verdict.outcome is Outcome.FAIL
    assert verdict.message == ("The HSM still holds the old database password after the rotation: "
                               "the new password is not kept in the HSM.")


@pytest.mark.parametrize(("changes", "why"), [
    ({"new_after": "not readable from the HSM", "changed_in_hsm": None}, "not readable from the HSM"),
    ({"new_after": "refused"}, "refused"),
    ({"new_after": "connection failed: timeout"}, "connection failed: timeout"),
])
def test_password_rotation_with_the_new_password_unread_or_refused_is_error(changes: dict,
                                                                            why: str) -> None:
    verdict = password_rotation_verdict(pw(**changes))
    assert verdict.outcome is Outcome.ERROR
    assert verdict.message == ("Cannot confirm that the new database password from the HSM is the "
                               f"one in use: {why}.")


def test_password_rotation_killed_by_the_harness_timeout_is_error_not_fail() -> None:
    verdict = password_rotation_verdict(pw(command=KILLED, old_after="accepted"))
    assert verdict.outcome is Outcome.ERROR
    assert verdict.message == ("The database password rotation command rotate did not finish "
                               "within 30 s (killed by the harness's timeout).")
    failed = password_rotation_verdict(pw(command=cmd(rc=1)))
    assert failed.outcome is Outcome.FAIL
    assert failed.message.startswith("The database password rotation failed: rotate exited 1")
