"""Key-management judgements on hand-made observations (no service running)."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import jwt
import pytest
from cryptography.fernet import Fernet

from checks.keys import (
    ChannelRow,
    CommandResult,
    JwtProof,
    JwtRotationObservation,
    PasswordRotationObservation,
    RingProof,
    TokenRotationObservation,
    create_canary,
    hsm_custody_verdict,
    jwt_rotation_verdict,
    load_key_classes,
    no_key_elsewhere_verdict,
    password_rotation_verdict,
    prove_jwt,
    prove_token_ring,
    read_at_start_verdict,
    run_operation,
    token_key_rotation_verdict,
)
from harness.keysearch import KeyHit, KeySearchResult
from harness.load import Attempt, LoadReport
from harness.outcomes import Outcome, ProbeError
from harness.policy import load_policy
from harness.probes.api import ApiResponse
from harness.probes.hsm import HsmObject, TokenListing
from harness.probes.processes import ProcessObservation
from harness.redaction import KnownSecrets

CLASSES = load_key_classes()
POLICY = load_policy()
NS = "votriz/"
ALL_LABELS = ["jwt-signing", "token-encryption/v1", "api/anthropic", "api/fal", "api/resend",
              "api/stripe", "db/password", "redis/password"]


def obj(label: str, **flags) -> HsmObject:
    base = dict(object_class="SECRET_KEY", key_type="GENERIC_SECRET", label=label, id_hex="",
                id_text="", token=True, private=True, sensitive=False, extractable=True,
                always_sensitive=False, never_extractable=False, local=False, value_len=32)
    base.update(flags)
    return HsmObject(**base)


def listing(*objects: HsmObject) -> TokenListing:
    return TokenListing("/lib.so", "SoftHSM", "votriz", "1", tuple(objects))


def full(*extra: HsmObject, skip: str = "") -> TokenListing:
    return listing(*(obj(NS + label) for label in ALL_LABELS if label != skip), *extra)


OK_JWT = JwtProof(True, "a JWT verifies")
OK_RING = RingProof(5, 5, (), "5 of 5 rows decrypt")


# keys.hsm_custody

def test_custody_passes_and_reports_extractable_keys() -> None:
    verdict = hsm_custody_verdict(full(), CLASSES, NS, OK_JWT, OK_RING)
    assert verdict.outcome is Outcome.PASS
    assert "All 8 key classes are private token objects under 'votriz/'" in verdict.message
    assert "8 key(s) are readable or extractable (reported, allowed by the page)" in verdict.message
    assert len(verdict.details["extractable"]) == 8


def test_custody_fails_when_a_class_is_missing() -> None:
    verdict = hsm_custody_verdict(full(skip="redis/password"), CLASSES, NS, OK_JWT, OK_RING)
    assert verdict.outcome is Outcome.FAIL
    assert verdict.message == "Not in the HSM: Redis password (expected votriz/redis/password)."


def test_custody_fails_on_a_session_object_or_public_key() -> None:
    bad = full(skip="api/stripe")
    bad = listing(*bad.objects, obj(NS + "api/stripe", token=False))
    verdict = hsm_custody_verdict(bad, CLASSES, NS, OK_JWT, OK_RING)
    assert verdict.outcome is Outcome.FAIL
    assert "votriz/api/stripe has TOKEN=False, PRIVATE=True" in verdict.message


def test_custody_fails_on_a_key_outside_the_namespace() -> None:
    verdict = hsm_custody_verdict(full(obj("legacy-key")), CLASSES, NS, OK_JWT, OK_RING)
    assert verdict.outcome is Outcome.FAIL
    assert verdict.message == "Keys outside the namespace 'votriz/': legacy-key."


def test_custody_fails_when_the_jwt_is_signed_with_another_key() -> None:
    verdict = hsm_custody_verdict(full(), CLASSES, NS, JwtProof(False, "a JWT does not verify"), OK_RING)
    assert verdict.outcome is Outcome.FAIL
    assert "signs sessions with another key" in verdict.message


def test_custody_fails_when_rows_are_under_another_key() -> None:
    verdict = hsm_custody_verdict(full(), CLASSES, NS, OK_JWT, RingProof(3, 2, (7,), "2 of 3"))
    assert verdict.outcome is Outcome.FAIL and "rows 7" in verdict.message


def test_prove_jwt_both_sides() -> None:
    key = b"k" * 32
    token = jwt.encode({"sub": "1", "exp": int(time.time()) + 60}, key, algorithm="HS256")
    assert prove_jwt(token, key, label="votriz/jwt-signing").verified is True
    assert prove_jwt(token, b"x" * 32, label="votriz/jwt-signing").verified is False
    assert prove_jwt(token, None, label="votriz/jwt-signing").verified is None


def test_prove_token_ring_both_sides() -> None:
    key, other = b"a" * 32, b"b" * 32
    good = Fernet(base64.urlsafe_b64encode(key)).encrypt(b"tok").decode()
    bad = Fernet(base64.urlsafe_b64encode(other)).encrypt(b"tok").decode()
    proof = prove_token_ring([ChannelRow(1, 1, good, None), ChannelRow(2, 1, good, bad)], [key])
    assert (proof.sampled, proof.decrypted, proof.undecryptable) == (2, 1, (2,))


class _SignupThenLogin:
    """An API whose signup works and whose first ``failing_logins`` logins fail."""

    def __init__(self, failing_logins: int) -> None:
        self.failing_logins = failing_logins
        self.account_exists = False
        self.token: str | None = None

    def signup(self, email: str, password: str) -> ApiResponse:
        self.account_exists = True
        return ApiResponse(201, {}, {})

    def login(self, email: str, password: str) -> str:
        if self.failing_logins > 0:
            self.failing_logins -= 1
            raise ProbeError("POST /login: no answer within 5s")
        self.token = "session-token-of-the-canary"
        return self.token

    def request(self, method: str, path: str, json: object = None, **kw: object) -> ApiResponse:
        if (method, path) == ("DELETE", "/account") and self.token is not None:
            self.account_exists = False
            return ApiResponse(204, {}, {})
        return ApiResponse(401, {}, {})

    def expect(self, status: object, method: str, path: str, json: object = None,
               **kw: object) -> ApiResponse:
        answer = self.request(method, path, json)
        if answer.status == 401:
            raise ProbeError(f"{method} {path}: expected HTTP {status}, got 401")
        return answer


def test_canary_whose_login_fails_after_signup_is_removed() -> None:
    # Given an API where the canary signs up but its first login times out
    api = _SignupThenLogin(failing_logins=1)
    # When the canary is made, the error goes up
    with pytest.raises(ProbeError) as raised:
        create_canary(api, KnownSecrets())  # type: ignore[arg-type]
    # Then the account was removed first, and the error says so
    assert not api.account_exists
    assert str(raised.value) == ("POST /login: no answer within 5s; the canary account had been "
                                 "created, it was removed")


def test_canary_that_cannot_be_removed_is_reported_with_its_address() -> None:
    api = _SignupThenLogin(failing_logins=5)
    with pytest.raises(ProbeError) as raised:
        create_canary(api, KnownSecrets())  # type: ignore[arg-type]
    assert api.account_exists
    message = str(raised.value)
    assert message.startswith("POST /login: no answer within 5s; the canary account had been "
                              "created, it could not be removed (POST /login: no answer within 5s): "
                              "delete canary+keys-")
    assert message.endswith("@audit.invalid by hand")
    # And a canary whose login works is returned logged in
    ok = _SignupThenLogin(failing_logins=0)
    canary = create_canary(ok, KnownSecrets())  # type: ignore[arg-type]
    assert ok.account_exists and ok.token and canary.email.endswith("@audit.invalid")


# keys.no_key_elsewhere

def hit(where: str, fails: bool = True) -> KeyHit:
    return KeyHit("value", "config", where, "votriz/api/stripe (raw)", "sha256:0", fails)


def test_no_key_elsewhere_fails_naming_the_place() -> None:
    result = KeySearchResult(hits=(hit("/s/api.toml:12"),), files_searched=3)
    verdict = no_key_elsewhere_verdict(result, ["votriz/api/stripe"])
    assert verdict.outcome is Outcome.FAIL
    assert verdict.message == "Keys found outside the HSM: votriz/api/stripe (raw) in config /s/api.toml:12."


def test_no_key_elsewhere_passes_with_reported_only_hits() -> None:
    result = KeySearchResult(hits=(hit("/s/edge.key:1", fails=False),), files_searched=3,
                             processes_searched=("api[pid 1 x]",))
    verdict = no_key_elsewhere_verdict(result, ["votriz/api/stripe"])
    assert verdict.outcome is Outcome.PASS
    assert verdict.message.startswith("None of 1 HSM keys")
    assert verdict.details["reported_not_failed"] == ["votriz/api/stripe (raw) in config /s/edge.key:1"]


def test_no_key_elsewhere_incomplete_search_is_error() -> None:
    result = KeySearchResult(files_searched=3, errors=("/s/gone.toml: not found",))
    verdict = no_key_elsewhere_verdict(result, ["votriz/api/stripe"])
    assert verdict.outcome is Outcome.ERROR and "/s/gone.toml: not found" in verdict.message
    assert no_key_elsewhere_verdict(KeySearchResult(files_searched=1), []).outcome is Outcome.ERROR
    assert no_key_elsewhere_verdict(KeySearchResult(), ["k"]).outcome is Outcome.ERROR


def test_no_key_elsewhere_with_a_truncated_log_or_a_binary_file_is_error_not_pass() -> None:
    # Given a search that read only the first 64 MiB of a log and skipped a binary file
    result = KeySearchResult(files_searched=3, processes_searched=("api[pid 1 x]",),
                             truncated=("/s/logs/api.log",),
                             truncated_at=(("/s/logs/api.log", 64 << 20),),
                             skipped=(("/s/data.db", "binary file"), ("/s/reports", "excluded")))
    verdict = no_key_elsewhere_verdict(result, ["votriz/api/stripe"])
    # Then it could not verify the rest: ERROR naming both, never PASS
    assert verdict.outcome is Outcome.ERROR
    assert verdict.message == ("The search is incomplete: searched only the first 64 MiB of "
                               "/s/logs/api.log; skipped /s/data.db (binary file).")


def test_no_key_elsewhere_fails_on_a_hit_even_when_the_search_was_partial() -> None:
    result = KeySearchResult(hits=(hit("/s/logs/api.log@12"),), files_searched=3,
                             truncated=("/s/logs/api.log",),
                             truncated_at=(("/s/logs/api.log", 64 << 20),))
    verdict = no_key_elsewhere_verdict(result, ["votriz/api/stripe"])
    assert verdict.outcome is Outcome.FAIL
    assert verdict.message == ("Keys found outside the HSM: votriz/api/stripe (raw) in config "
                               "/s/logs/api.log@12.")


# keys.read_at_start

def proc(name: str, files: tuple[str, ...] = (), **kw) -> ProcessObservation:
    return ProcessObservation(name, 10, 1, "gunicorn", (("PATH", b"/bin"),), open_files=files, **kw)


def test_read_at_start_passes() -> None:
    verdict = read_at_start_verdict([proc("api"), proc("api/child", ("/s/api.log",))], [],
                                    Path("/s/tokens"), ["hsm"])
    assert verdict.outcome is Outcome.PASS
    assert verdict.message == ("No PIN and no key in the environment of 2 service processes; "
                               "none holds a file under /s/tokens open.")


def test_read_at_start_fails_on_pin_in_env() -> None:
    env_hit = KeyHit("value", "env", "api[pid 10 gunicorn] $VOTRIZ_HSM_PIN", "HSM user PIN (raw)",
                     "sha256:0")
    verdict = read_at_start_verdict([proc("api")], [env_hit], Path("/s/tokens"), ["hsm"])
    assert verdict.outcome is Outcome.FAIL
    assert "HSM user PIN (raw) in env api[pid 10 gunicorn] $VOTRIZ_HSM_PIN" in verdict.message


def test_read_at_start_fails_on_open_token_files_but_not_for_the_hsm() -> None:
    held = ("/s/tokens/abc/token.object",)
    verdict = read_at_start_verdict([proc("api/child", held)], [], Path("/s/tokens"), ["hsm"])
    assert verdict.outcome is Outcome.FAIL and "holds /s/tokens/abc/token.object" in verdict.message
    assert read_at_start_verdict([proc("hsm", held)], [], Path("/s/tokens"),
                                 ["hsm"]).outcome is Outcome.PASS


def test_read_at_start_fails_when_the_pin_file_stays_open() -> None:
    verdict = read_at_start_verdict([proc("api", ("/s/secrets/hsm-pin",))], [], Path("/s/tokens"),
                                    ["hsm"], Path("/s/secrets/hsm-pin"))
    assert verdict.outcome is Outcome.FAIL
    assert verdict.message == ("Service processes keep the HSM's files open after start: "
                               "api[pid 10 gunicorn] holds the PIN file /s/secrets/hsm-pin.")


def test_read_at_start_without_processes_or_env_is_error() -> None:
    assert read_at_start_verdict([], [], None, []).outcome is Outcome.ERROR
    blind = proc("api", environ_error="cannot read /proc/10/environ: Permission denied")
    assert read_at_start_verdict([blind], [], None, []).outcome is Outcome.ERROR


def test_no_key_elsewhere_without_process_environments_is_manual_not_pass() -> None:
    # Given files searched clean but no process environment inspected
    verdict = no_key_elsewhere_verdict(KeySearchResult(files_searched=3), ["votriz/api/stripe"])
    # Then the unobserved part is left to a human, with what to check
    assert verdict.outcome is Outcome.MANUAL
    assert verdict.message == (
        "None of 1 HSM keys (raw, base64, hex) nor any key-shaped string was found in 3 files, but "
        "the environments of the service's processes could not be inspected from here. By hand: on "
        "each service host, check that no service process's environment (/proc/PID/environ, docker "
        "inspect) holds a key.")


def test_read_at_start_without_the_token_dir_is_manual_not_pass() -> None:
    verdict = read_at_start_verdict([proc("api")], [], None, ["hsm"])
    assert verdict.outcome is Outcome.MANUAL
    assert verdict.message == (
        "No PIN and no key in the environment of 1 service processes, but the HSM's token files are "
        "not visible from here, so open files were not judged. By hand: on the HSM host, check that "
        "no service process keeps a token file open after start (ls -l /proc/PID/fd).")
    # A PIN in the environment still fails without the token directory.
    env_hit = KeyHit("value", "env", "api[pid 10 gunicorn] $PIN", "HSM user PIN (raw)", "sha256:0")
    assert read_at_start_verdict([proc("api")], [env_hit], None, ["hsm"]).outcome is Outcome.FAIL


# keys.token_key_rotation

def cmd(rc: int | None = 0, timed_out: bool = False) -> CommandResult:
    return CommandResult(("rotate",), rc, 4.0, timed_out, ((1.0, '{"rows": 10}'),))


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


KILLED = CommandResult(("rotate",), None, 30.0, True, timeout_s=30.0)


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
                        ("worker 0: TypeError at checks/keys.py:900",))
    verdict = token_key_rotation_verdict(rotation(load=broken), POLICY)
    # Then the check ends ERROR naming the defect, never FAIL
    assert verdict.outcome is Outcome.ERROR
    assert verdict.message == ("The harness's load generator hit a defect in its own code (not a "
                               "failed request of the service): worker 0: TypeError at "
                               "checks/keys.py:900.")
    # And failed requests of the service still fail the rotation
    assert token_key_rotation_verdict(rotation(load=load(errors=1)), POLICY).outcome is Outcome.FAIL


# keys.jwt_rotation

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


# keys.db_password_rotation / keys.redis_password_rotation

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


# Operator commands.

def test_run_operation_streams_lines_and_times_out() -> None:
    seen: list[str] = []
    done = run_operation(["python3", "-c", "print('a'); print('b'); import sys; sys.exit(3)"], 10,
                         on_line=seen.append)
    assert (done.returncode, seen, done.ok) == (3, ["a", "b"], False)
    slow = run_operation(["sleep", "5"], 0.3)
    assert slow.timed_out and slow.returncode is None and "did not finish in time" in slow.describe()
    assert slow.unfinished() == "sleep 5 did not finish within 0.3 s (killed by the harness's timeout)"
    assert done.unfinished() == ""
    with pytest.raises(ProbeError, match=r"cannot run /nonexistent"):
        run_operation(["/nonexistent"], 1)


def test_key_classes_file_names_every_row_of_the_page() -> None:
    names = [c.name for c in CLASSES.classes]
    assert names == ["JWT signing secret", "Token encryption key", "API key: Anthropic",
                     "API key: fal.ai", "API key: Resend", "API key: Stripe", "Database password",
                     "Redis password"]


def test_claim_markers_match_the_catalogue() -> None:
    import checks.keys as keys
    from harness.claims import load_catalogue

    catalogue = load_catalogue()
    for name in dir(keys):
        if not name.startswith("check_"):
            continue
        check_id = "keys." + name.removeprefix("check_")
        marked = {claim for mark in getattr(keys, name).pytestmark if mark.name == "claims"
                  for claim in mark.args}
        assert marked == set(catalogue.claims_of_check(check_id)), check_id
