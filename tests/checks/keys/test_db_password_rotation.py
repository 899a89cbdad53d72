"""keys.db_password_rotation (and keys.redis_password_rotation, judged alike): the password
rotation verdict on hand-made observations, and the health around the rotation that turns an
outage into ERROR (also used by the other rotation checks' tests)."""

from __future__ import annotations

import datetime as dt

import pytest
from verdict_asserts import assert_verdict

from harness.health import API, DATABASE, REDIS, DependencyHealth, HealthAround, HealthObservation, Outage
from harness.outcomes import Outcome
from harness.probes.rotation import PasswordRotationObservation, password_rotation_verdict

from .conftest import KILLED, cmd

AT = dt.datetime(2026, 12, 7, 5, 12, 3, tzinfo=dt.UTC)


def seen(*down: str) -> HealthObservation:
    """Every part of the service answering, except ``down``."""
    return HealthObservation(AT, tuple(
        DependencyHealth(name, where, name not in down, "no answer within 2 s" if name in down else "")
        for name, where in ((API, "https://votriz.test/healthz"), (DATABASE, "127.0.0.1:5432"),
                            (REDIS, "127.0.0.1:6379"))))


#: Healthy before and right after the rotation.
HEALTHY = HealthAround(before=seen(), after=seen())
#: Healthy before; the database unavailable right after.
DB_DOWN_AFTER = HealthAround(before=seen(), after=seen(DATABASE))
#: Not run: the database was seen unavailable (now, or earlier in the run).
DB_DOWN_BEFORE = HealthAround(before=seen(DATABASE),
                              not_run=Outage(DATABASE, AT, "127.0.0.1:5432: no answer within 2 s"))
NOT_RUN_MESSAGE = ("not run: the database was unavailable at 05:12:03 UTC (127.0.0.1:5432: no answer "
                   "within 2 s); rotate was not started.")


def pw(what: str = "database", **changes) -> PasswordRotationObservation:
    """A password rotation of ``what`` that went well, but for ``changes``."""
    base = dict(what=what, command=cmd(), old_accepted_before="", old_after="refused",
                new_after="accepted", changed_in_hsm=True, service_after="", health=HEALTHY)
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


def test_password_rotation_failing_while_healthy_stays_fail() -> None:
    # (a) Healthy before and after, and the service broken after the rotation: a broken promise
    verdict = password_rotation_verdict(pw(service_after="POST /signup: expected HTTP 201, got 503"))
    assert verdict.outcome is Outcome.FAIL
    assert verdict.message == ("The service does not work after the database password rotation: "
                               "POST /signup: expected HTTP 201, got 503.")


def test_password_rotation_failing_with_the_database_down_after_it_is_error_naming_it() -> None:
    # (b) The command failed and the service answered 503 while the database did not answer
    verdict = password_rotation_verdict(pw(
        command=cmd(rc=1), old_after="connection failed: connection timeout expired",
        new_after="connection failed: connection timeout expired",
        service_after="POST /signup: expected HTTP 201, got 503", health=DB_DOWN_AFTER))
    assert_verdict(verdict, Outcome.ERROR, starts=(
        "The database was unavailable right after the database password rotation (127.0.0.1:5432: no "
        "answer within 2 s, at 05:12:03 UTC), which explains what failed: the rotation command: rotate "
        "exited 1 after 4.0 s"), says=["the service: POST /signup: expected HTTP 201, got 503"])
    assert verdict.details["health"]["after"]["healthy"] is False
    # And an outage after a rotation that worked in every respect changes nothing
    assert password_rotation_verdict(pw(health=DB_DOWN_AFTER)).outcome is Outcome.PASS


def test_password_rotation_not_run_because_of_an_outage_is_error() -> None:
    # (c) Unhealthy before: the command was not started
    verdict = password_rotation_verdict(PasswordRotationObservation.not_run("database", ("rotate",),
                                                                            DB_DOWN_BEFORE))
    assert verdict.outcome is Outcome.ERROR
    assert verdict.message == NOT_RUN_MESSAGE
    assert verdict.details["command"]["started"] is False


def test_password_rotation_killed_with_the_database_down_is_error_naming_the_database() -> None:
    verdict = password_rotation_verdict(pw(command=KILLED, old_after="connection failed: timeout",
                                           health=DB_DOWN_AFTER))
    assert verdict.outcome is Outcome.ERROR
    assert verdict.message.startswith("The database was unavailable right after the database password "
                                      "rotation (127.0.0.1:5432: no answer within 2 s, at 05:12:03 UTC), "
                                      "which explains what failed: the rotation command: rotate did not "
                                      "finish within 30 s")
