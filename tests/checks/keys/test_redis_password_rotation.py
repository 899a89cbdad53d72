"""keys.redis_password_rotation: the shared password verdict, for Redis, on hand-made observations
(the measured case: the database down after a Redis rotation made the service answer 503)."""

from __future__ import annotations

from checks.keys import redis_password_rotation
from harness.outcomes import Outcome
from harness.probes import rotation
from harness.probes.rotation import PasswordRotationObservation, password_rotation_verdict

from .test_db_password_rotation import DB_DOWN_AFTER, DB_DOWN_BEFORE, NOT_RUN_MESSAGE, pw


def redis(**changes) -> PasswordRotationObservation:
    return pw("Redis", **changes)


def test_the_check_uses_the_verdict_kept_beside_the_observation() -> None:
    # No check borrows from another check: both password checks call the probe module's verdict
    assert redis_password_rotation.password_rotation_verdict is rotation.password_rotation_verdict


def test_redis_rotation_passes_and_fails_while_healthy() -> None:
    assert password_rotation_verdict(redis()).outcome is Outcome.PASS
    # (a) Healthy around it, and the old password still works: a broken promise
    kept = password_rotation_verdict(redis(old_after="accepted"))
    assert (kept.outcome, kept.message) == (Outcome.FAIL,
                                            "The old Redis password still works after the rotation.")
    broken = password_rotation_verdict(redis(service_after="POST /signup: expected HTTP 201, got 503"))
    assert broken.outcome is Outcome.FAIL


def test_redis_rotation_with_the_database_down_after_it_is_error_not_fail() -> None:
    # (b) Redis rotated fine, but the service answered 503 because the database was down
    verdict = password_rotation_verdict(redis(service_after="POST /signup: expected HTTP 201, got 503",
                                              health=DB_DOWN_AFTER))
    assert verdict.outcome is Outcome.ERROR
    assert verdict.message == (
        "The database was unavailable right after the Redis password rotation (127.0.0.1:5432: no "
        "answer within 2 s, at 05:12:03 UTC), which explains what failed: the service: POST /signup: "
        "expected HTTP 201, got 503. Not judged as a broken promise.")


def test_redis_rotation_not_run_after_an_outage() -> None:
    # (c) Unhealthy before: not run, ERROR naming the database
    verdict = password_rotation_verdict(PasswordRotationObservation.not_run("Redis", ("rotate",),
                                                                            DB_DOWN_BEFORE))
    assert (verdict.outcome, verdict.message) == (Outcome.ERROR, NOT_RUN_MESSAGE)
