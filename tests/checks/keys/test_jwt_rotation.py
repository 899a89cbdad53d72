"""keys.jwt_rotation: its verdict on hand-made observations of a session across a rotation."""

from __future__ import annotations

from checks.keys.jwt_rotation import jwt_rotation_verdict
from harness.outcomes import Outcome
from harness.probes.rotation import JwtRotationObservation

from .conftest import KILLED, cmd


def jwt_obs(**changes) -> JwtRotationObservation:
    base = dict(command=cmd(), status_before=200, status_after=401, refused_after_s=0.2, new_login="",
                new_token_status=200, secret_changed=True)
    base.update(changes)
    return JwtRotationObservation(**base)


def test_jwt_rotation_both_sides() -> None:
    assert jwt_rotation_verdict(jwt_obs(), 10).outcome is Outcome.PASS
    kept = jwt_rotation_verdict(jwt_obs(status_after=200, refused_after_s=None), 10)
    assert kept.outcome is Outcome.FAIL
    assert kept.message == ("A session token issued before the rotation is still accepted (HTTP 200) "
                            "10 s after it.")
    broken = jwt_rotation_verdict(jwt_obs(new_login="POST /login: expected HTTP 200, got 500"), 10)
    assert broken.outcome is Outcome.FAIL and "a new login does not work" in broken.message
    assert jwt_rotation_verdict(jwt_obs(status_before=500), 10).outcome is Outcome.ERROR


def test_jwt_rotation_killed_by_the_harness_timeout_is_error_not_fail() -> None:
    verdict = jwt_rotation_verdict(jwt_obs(command=KILLED, status_after=200, refused_after_s=None), 10)
    assert verdict.outcome is Outcome.ERROR
    assert verdict.message == ("The JWT rotation command rotate did not finish within 30 s (killed "
                               "by the harness's timeout).")
    failed = jwt_rotation_verdict(jwt_obs(command=cmd(rc=2)), 10)
    assert failed.outcome is Outcome.FAIL
    assert failed.message.startswith("The JWT rotation command failed: rotate exited 2")


def test_jwt_rotation_with_a_5xx_for_the_old_session_is_error_not_fail() -> None:
    # Given the old session answered 502 (not 200, not 401) until the grace period ended
    verdict = jwt_rotation_verdict(jwt_obs(status_after=502, refused_after_s=None), 10)
    # Then the old session was not observed to be accepted: ERROR, not FAIL
    assert verdict.outcome is Outcome.ERROR
    assert verdict.message == ("Cannot tell whether a session token issued before the rotation is "
                               "refused: 10 s after it the service answered HTTP 502, neither 200 "
                               "nor 401.")
    kept = jwt_rotation_verdict(jwt_obs(status_after=200, refused_after_s=None), 10)
    assert kept.outcome is Outcome.FAIL and "still accepted (HTTP 200)" in kept.message
