"""keys.jwt_rotation: its verdict on hand-made observations of a session across a rotation."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from fake_votriz_api import CanaryOnlyApi

from checks.keys.jwt_rotation import jwt_rotation_verdict
from harness.canaries import CanaryAccount
from harness.canary_ledger import CanaryLedger, CanaryState
from harness.health import HealthAround
from harness.key_classes import load_key_classes
from harness.outcomes import Outcome, ProbeError
from harness.policy import load_policy
from harness.probes import rotation
from harness.probes.api import ApiResponse
from harness.probes.rotation import JwtRotationObservation
from harness.profile import parse_profile
from harness.redaction import KnownSecrets

from .conftest import KILLED, cmd
from .test_db_password_rotation import DB_DOWN_AFTER, DB_DOWN_BEFORE, HEALTHY, NOT_RUN_MESSAGE


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
                               "refused: 10 s after it the service gave HTTP 502, neither 200 "
                               "nor 401.")
    kept = jwt_rotation_verdict(jwt_obs(status_after=200, refused_after_s=None), 10)
    assert kept.outcome is Outcome.FAIL and "still accepted (HTTP 200)" in kept.message


# --- the service's health around the rotation, and the canary on every path --------------------

def test_jwt_rotation_failing_while_healthy_stays_fail() -> None:
    # (a) Healthy around it: a new login that fails after the rotation is a broken promise
    verdict = jwt_rotation_verdict(jwt_obs(new_login="POST /login: expected HTTP 200, got 503",
                                           health=HEALTHY), 10)
    assert verdict.outcome is Outcome.FAIL
    assert verdict.message == ("After the rotation, a new login does not work: POST /login: expected "
                               "HTTP 200, got 503.")


def test_jwt_rotation_failing_with_the_database_down_after_it_is_error_naming_it() -> None:
    # (b) The old session got 503 and the new login failed while the database did not answer
    verdict = jwt_rotation_verdict(jwt_obs(status_after=503, refused_after_s=None,
                                           new_login="POST /login: expected HTTP 200, got 503",
                                           new_token_status=None, health=DB_DOWN_AFTER), 10)
    assert verdict.outcome is Outcome.ERROR
    assert verdict.message == (
        "The database was unavailable right after the JWT rotation (127.0.0.1:5432: no answer within "
        "2 s, at 05:12:03 UTC), which explains what failed: the old session got HTTP 503; the new "
        "login: POST /login: expected HTTP 200, got 503. Not judged as a broken promise.")
    # And an old session the service itself accepted stays a FAIL whatever happened after it
    kept = jwt_rotation_verdict(jwt_obs(status_after=200, refused_after_s=None,
                                        new_login="POST /login: expected HTTP 200, got 503",
                                        health=DB_DOWN_AFTER), 10)
    assert kept.outcome is Outcome.FAIL and "still accepted (HTTP 200)" in kept.message


def test_jwt_rotation_not_run_because_of_an_outage_is_error() -> None:
    # (c) Unhealthy before: not run
    verdict = jwt_rotation_verdict(JwtRotationObservation.not_run(("rotate",), DB_DOWN_BEFORE), 10)
    assert (verdict.outcome, verdict.message) == (Outcome.ERROR, NOT_RUN_MESSAGE)


class _Api(CanaryOnlyApi):
    """Just enough of VotrizApi: one canary account; the database can be made to go away."""

    instances: ClassVar[list[_Api]] = []
    database_down_after_rotation: ClassVar[bool] = False
    rotated: ClassVar[bool] = False

    def _down(self) -> bool:
        return _Api.rotated and _Api.database_down_after_rotation

    def request(self, method: str, path: str, json: Any = None, *, auth: bool = True,
                token: str | None = None) -> ApiResponse:
        if self._down():
            return ApiResponse(503, {"error": "database unavailable"}, {})
        if path == "/brands" and _Api.rotated and token == "old-session":
            return ApiResponse(401, {}, {})
        return super().request(method, path, json, auth=auth, token=token)

    def login(self, email: str, password: str) -> str:
        if self._down():
            raise ProbeError("POST /login: expected HTTP 200, got 503")
        self.token = "new-session"
        return self.token

    def delete_account(self) -> ApiResponse:
        answer = self.request("DELETE", "/account")
        if answer.status not in (200, 202, 204):
            raise ProbeError(f"DELETE /account: expected HTTP 200/202/204, got {answer.status}")
        return answer


@pytest.fixture
def fake_service(monkeypatch: pytest.MonkeyPatch) -> type[_Api]:
    def fake_create_canary(api: _Api, known: KnownSecrets, purpose: str) -> CanaryAccount:
        # Recorded in the test's ledger as create_canary records it in the run's
        email, password = "canary+keys-0a1b2c@audit.invalid", "pw-of-the-canary"
        entry = LEDGER.signup_about_to_be_sent(email, password, purpose)
        api.account_exists, api.token = True, "old-session"
        LEDGER.signup_answered(entry, 17)
        return CanaryAccount(email=email, password=password, entry=entry, ledger=LEDGER)

    def fake_rotate(argv: Any, timeout_s: float, **kwargs: Any) -> Any:
        _Api.rotated = True
        return cmd()

    global LEDGER
    LEDGER = CanaryLedger()
    _Api.instances.clear()
    _Api.rotated = False
    _Api.database_down_after_rotation = False
    monkeypatch.setattr(rotation, "VotrizApi", _Api)
    monkeypatch.setattr(rotation, "create_canary", fake_create_canary)
    monkeypatch.setattr(rotation, "run_operation", fake_rotate)
    monkeypatch.setattr(rotation, "before_destructive", lambda *a, **k: HealthAround(before=HEALTHY.before))
    monkeypatch.setattr(rotation, "after_operation",
                        lambda p, pol, around, what, known=None: DB_DOWN_AFTER if
                        _Api.database_down_after_rotation else HEALTHY)
    return _Api


LEDGER = CanaryLedger()
PROFILE = parse_profile('name = "t"\n[edge]\nhost = "votriz.test"\n[api]\n')


def observe() -> JwtRotationObservation:
    classes = load_key_classes()
    quick = classes.model_copy(update={"proof": classes.proof.model_copy(update={"roll_grace_s": 0.5})})
    return rotation.observe_jwt_rotation(PROFILE, load_policy(None), KnownSecrets(), quick, ["rotate"])


def test_jwt_rotation_canary_is_removed_when_the_service_works(fake_service: type[_Api]) -> None:
    obs = observe()
    assert (obs.refused_after_s is not None, obs.new_login) == (True, "")
    assert [api.account_exists for api in fake_service.instances] == [False]
    assert [entry.state for entry in LEDGER.entries] == [CanaryState.REMOVED] and not LEDGER.open_entries()
    assert jwt_rotation_verdict(obs, 10).outcome is Outcome.PASS


def test_jwt_rotation_canary_left_by_an_outage_stays_open_in_the_ledger_naming_it(
        fake_service: type[_Api]) -> None:
    # Given a database that goes away right after the rotation (the login after it fails)
    fake_service.database_down_after_rotation = True
    obs = observe()
    # Then the canary could not be removed, and the run's ledger holds it open, by address, with why
    assert obs.new_login == "POST /login: expected HTTP 200, got 503"
    verdict = jwt_rotation_verdict(obs, 0.1)
    assert verdict.outcome is Outcome.ERROR and verdict.message.startswith("The database was unavailable")
    assert [(e.address, e.created_by, e.state, e.note) for e in LEDGER.open_entries()] == [
        ("canary+keys-0a1b2c@audit.invalid", "", CanaryState.CREATED,
         "POST /login: expected HTTP 200, got 503")]
    # And the ledger is what the run reconciles and reports (tests/harness/test_canary_ledger.py);
    # the check itself needs no teardown of its own
    assert "canary_left" not in verdict.details


def test_jwt_rotation_killed_or_unanswered_with_the_database_down_is_error_naming_it() -> None:
    # Given the command killed at the harness's limit and the old session without an answer,
    # while the database did not answer right after
    verdict = jwt_rotation_verdict(jwt_obs(command=KILLED, status_after=0, refused_after_s=None,
                                           new_login="POST /login: no answer in time",
                                           new_token_status=None, health=DB_DOWN_AFTER), 10)
    # Then the outage is named, with what failed, rather than the timeout alone
    assert verdict.outcome is Outcome.ERROR
    assert verdict.message.startswith("The database was unavailable right after the JWT rotation")
    assert ("the rotation command: rotate did not finish within 30 s (killed by the harness's "
            "timeout); the old session got no answer; the new login: POST /login: no answer in time"
            in verdict.message)
    # And without an outage, an old session without answer cannot be judged
    unanswered = jwt_rotation_verdict(jwt_obs(status_after=0, refused_after_s=None), 10)
    assert unanswered.outcome is Outcome.ERROR and "gave no answer, neither 200 nor 401" in unanswered.message
