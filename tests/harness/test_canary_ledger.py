"""The canary ledger: every account written down before its signup leaves, closed when its removal
is confirmed, reconciled at the end of the run, and what is left reported by the plugin."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from pytester_checks import audit_argv, unreachable_target

from harness.canaries import CanarySession, canary_account, create_canary
from harness.canary_ledger import (
    CLEANUP,
    CanaryLedger,
    CanaryState,
    LedgerEntry,
    cleanup_results,
    reconcile_canaries,
)
from harness.outcomes import Outcome, ProbeError
from harness.policy import load_policy
from harness.probes.api import ApiResponse, VotrizApi
from harness.profile import TargetProfile
from harness.redaction import KnownSecrets

T0 = dt.datetime(2026, 12, 7, 5, 0, tzinfo=dt.UTC)
PROFILE = TargetProfile.model_validate({"name": "t", "edge": {"host": "votriz.test"}, "api": {}})


class _Api:
    """A stand-in for VotrizApi: what its signup sees of the ledger, and a chosen fate per call."""

    def __init__(self, ledger: CanaryLedger, signup: str = "ok", delete: str = "ok") -> None:
        self.ledger, self.signup_fate, self.delete_fate = ledger, signup, delete
        self.seen_at_signup: list[tuple[str, str, CanaryState]] = []
        self.token: str | None = None
        self.exists = False

    def signup(self, email: str, password: str) -> ApiResponse:
        # The ledger must already hold the account as the request leaves.
        self.seen_at_signup = [(e.address, e.created_by, e.state) for e in self.ledger.entries]
        if self.signup_fate == "lost":
            self.exists = True  # committed by the service, its answer never arrived
            raise ProbeError("POST /signup: no answer from https://votriz.test/ in time")
        if self.signup_fate == "refused":
            raise ProbeError("POST /signup: expected HTTP 201, got 409 (email taken)")
        self.exists = True
        return ApiResponse(201, {"id": 41}, {})

    def login(self, email: str, password: str) -> str:
        self.token = "session-of-the-canary-0123456789"
        return self.token

    def delete_account(self) -> ApiResponse:
        if self.delete_fate != "ok":
            raise ProbeError("DELETE /account: expected HTTP 200/202/204, got 500")
        self.exists = False
        return ApiResponse(204, {}, {})

    def request(self, method: str, path: str, json: object = None, **kw: object) -> ApiResponse:
        if (method, path) == ("DELETE", "/account"):
            return self.delete_account()
        return ApiResponse(200 if self.token else 401, {}, {})

    def close(self) -> None:
        pass


def test_the_entry_is_written_before_the_signup_request_and_closed_at_removal() -> None:
    # Given a ledger while the check keys.jwt_rotation runs
    ledger = CanaryLedger(now=lambda: T0)
    ledger.current_check = "keys.jwt_rotation"
    api = _Api(ledger)
    # When a canary is made and removed
    canary = create_canary(api, KnownSecrets(), "keys", ledger)  # type: ignore[arg-type]
    # Then the signup request found its entry already there, naming the check
    assert api.seen_at_signup == [(canary.email, "keys.jwt_rotation", CanaryState.SIGNUP_SENT)]
    entry = ledger.entries[0]
    assert (entry.state, entry.user_id, entry.created_at) == (CanaryState.CREATED, 41, T0)
    assert canary.remove(api, KnownSecrets()) == ""  # type: ignore[arg-type]
    # And the removal closed it
    assert (entry.state, entry.removed_at, ledger.open_entries()) == (CanaryState.REMOVED, T0, [])


def test_a_signup_without_answer_stays_open_and_a_refused_one_is_closed() -> None:
    ledger = CanaryLedger()
    lost, refused = _Api(ledger, signup="lost"), _Api(ledger, signup="refused")
    with pytest.raises(ProbeError, match="no answer"):
        create_canary(lost, KnownSecrets(), "transit", ledger)  # type: ignore[arg-type]
    with pytest.raises(ProbeError, match="got 409"):
        create_canary(refused, KnownSecrets(), "transit", ledger)  # type: ignore[arg-type]
    # The account whose answer was lost exists, and the ledger still lists it; the refused one does not
    assert lost.exists and not refused.exists
    assert [e.state for e in ledger.entries] == [CanaryState.SIGNUP_SENT, CanaryState.NOT_CREATED]
    assert ledger.open_entries() == ledger.entries[:1]


def test_a_failed_removal_keeps_the_entry_open_with_why_and_canary_account_says_so() -> None:
    ledger = CanaryLedger()
    api = _Api(ledger, delete="500")
    with pytest.raises(ProbeError, match=r"could not be removed .*got 500.*: delete canary\+keys-"), \
            canary_account(api, KnownSecrets(), "keys", ledger):  # type: ignore[arg-type]
        pass
    (entry,) = ledger.open_entries()
    assert entry.state is CanaryState.CREATED and entry.note.endswith("got 500")


def _entry(ledger: CanaryLedger, address: str, state: CanaryState = CanaryState.CREATED) -> LedgerEntry:
    entry = ledger.signup_about_to_be_sent(address, "pw-" + address, "keys")
    if state is CanaryState.CREATED:
        ledger.signup_answered(entry, None)
    return entry


def test_reconcile_tries_each_open_entry_once_more_and_returns_the_rest() -> None:
    # Given one removed account, one the last attempt removes, one it cannot, one with a lost signup
    ledger = CanaryLedger()
    gone = _entry(ledger, "gone@audit.invalid")
    ledger.removed(gone)
    _entry(ledger, "second-chance@audit.invalid")
    stuck = _entry(ledger, "stuck@audit.invalid")
    lost = _entry(ledger, "lost@audit.invalid", CanaryState.SIGNUP_SENT)
    tried: list[str] = []

    def remove(api: VotrizApi, entry: LedgerEntry) -> str:
        tried.append(entry.address)
        return "" if entry.address.startswith("second") else "POST /login: no answer in time"

    # When the run reconciles
    left = reconcile_canaries(ledger, PROFILE, load_policy(), KnownSecrets(), remove=remove)
    # Then only open entries were tried, and those not removed are returned with why
    assert tried == ["second-chance@audit.invalid", "stuck@audit.invalid", "lost@audit.invalid"]
    assert left == [stuck, lost] and stuck.note == "POST /login: no answer in time"
    assert ledger.entries[1].state is CanaryState.REMOVED


def test_reconcile_starts_no_attempt_past_its_deadline() -> None:
    ledger = CanaryLedger()
    for name in ("a", "b", "c"):
        _entry(ledger, f"{name}@audit.invalid")
    now = [0.0]
    policy = load_policy()

    def slow(api: VotrizApi, entry: LedgerEntry) -> str:
        now[0] += policy.timeouts.command_s  # each attempt uses the whole budget
        return "POST /login: no answer in time"

    left = reconcile_canaries(ledger, PROFILE, policy, KnownSecrets(), remove=slow, clock=lambda: now[0])
    assert len(left) == 3
    assert [e.note.split(": ")[0] for e in left] == ["POST /login", "not tried again", "not tried again"]
    assert "(timeouts.command_s) were used up" in left[2].note


def test_cleanup_results_name_each_account_left_and_write_the_ledger_without_secrets(tmp_path: Path) -> None:
    # Given a run whose keys canary could not be removed and whose at-rest canary (a secret address)
    # could not either, and a third one that was removed
    known = KnownSecrets()
    ledger = CanaryLedger(now=lambda: T0)
    ledger.current_check = "keys.jwt_rotation"
    keys = _entry(ledger, "canary+keys-0a1b2c@audit.invalid")
    known.add(keys.password, "canary password")
    ledger.removal_failed(keys, "POST /login: expected HTTP 200, got 503")
    ledger.current_check = "at_rest.backup_codes"
    at_rest = ledger.signup_about_to_be_sent("canary+run1234abcd@audit.invalid", "pw-at-rest-0123456",
                                             "at_rest", address_is_secret=True)
    known.add(at_rest.address, "canary e-mail")
    ledger.signup_answered(at_rest, 77)
    removed = _entry(ledger, "canary+keys-ffffff@audit.invalid")
    ledger.removed(removed)
    # When the plugin asks for the clean-up's results (the profile has no [api]: no last attempt)
    bare = PROFILE.model_copy(update={"api": None})
    results = cleanup_results(ledger, bare, load_policy(), known, tmp_path)
    # Then each account left is one ERROR, by address or (for a secret address) by users.id
    assert [(r.finding_id, r.check_id, r.outcome) for r in results] == [
        (f"{CLEANUP}/canary+keys-0a1b2c@audit.invalid", CLEANUP, Outcome.ERROR),
        (f"{CLEANUP}/users.id 77", CLEANUP, Outcome.ERROR)]
    assert results[0].message == (
        "the canary account canary+keys-0a1b2c@audit.invalid (keys, made by keys.jwt_rotation at "
        "2026-12-07 05:00:00 UTC, created) could not be removed: POST /login: expected HTTP 200, got 503; "
        "delete it by hand")
    assert results[1].message.startswith("the canary account users.id 77 (at_rest, made by "
                                         "at_rest.backup_codes at ")
    assert results[0].evidence == (f"evidence/{CLEANUP}/ledger.json",)
    # And the ledger is evidence: ids, purposes, times, states; no password, no secret address
    text = (tmp_path / "evidence" / CLEANUP / "ledger.json").read_text()
    data = json.loads(text)
    assert [(a["account"], a["state"], a["created_by"]) for a in data["accounts"]] == [
        ("canary+keys-0a1b2c@audit.invalid", "created", "keys.jwt_rotation"),
        ("users.id 77", "created", "at_rest.backup_codes"),
        ("canary+keys-ffffff@audit.invalid", "removed", "at_rest.backup_codes")]
    assert data["left"] == 2 and data["accounts"][2]["removed_at"] == T0.isoformat()
    for secret in ("pw-canary+keys", "pw-at-rest-0123456", "canary+run1234abcd"):
        assert secret not in text and all(secret not in r.message for r in results)


def test_cleanup_results_are_empty_when_the_run_made_no_canary(tmp_path: Path) -> None:
    assert cleanup_results(CanaryLedger(), PROFILE, load_policy(), KnownSecrets(), tmp_path) == []
    assert not (tmp_path / "evidence").exists()


def test_the_at_rest_session_records_its_canary_and_removes_one_whose_signup_answer_was_lost() -> None:
    # Given the at-rest canary session, whose signup is committed but its answer lost
    ledger = CanaryLedger()
    api = _Api(ledger, signup="lost")

    class Mail:
        def reconnect(self) -> None:
            pass

    session = CanarySession(api, Mail(), KnownSecrets(), ledger=ledger,  # type: ignore[arg-type]
                            ready_wait_s=0, api_factory=lambda: api)  # type: ignore[arg-type,return-value]
    # When it is entered, the error goes up
    with pytest.raises(ProbeError, match="no answer"), session:
        pass
    # Then the account it may have made was removed by logging in, and the ledger closed
    assert api.seen_at_signup[0][2] is CanaryState.SIGNUP_SENT and ledger.entries[0].address_is_secret
    assert not api.exists and session.canary.removed
    assert ledger.entries[0].state is CanaryState.REMOVED


# The plugin, through pytester: what the ledger leaves is a harness.cleanup ERROR naming it.

CHECKS = '''
import pytest
from harness.canaries import create_canary
from harness.outcomes import ProbeError, Verdict
from harness.probes.api import ApiResponse

class Api:
    token = None
    def __init__(self, delete_works):
        self.delete_works = delete_works
    def signup(self, email, password):
        return ApiResponse(201, {"id": 5}, {})
    def login(self, email, password):
        self.token = "tok-of-the-canary-0123456789"
        return self.token
    def delete_account(self):
        if not self.delete_works:
            raise ProbeError("DELETE /account: expected HTTP 200/202/204, got 500")
        return ApiResponse(204, {}, {})

@pytest.mark.claims("TRANSIT-TLS13")
def check_cleans_up(known_secrets, evidence):
    canary = create_canary(Api(True), known_secrets, "transit")
    assert canary.remove(Api(True), known_secrets) == ""
    evidence.conclude(Verdict.passed("made one and removed it"))

@pytest.mark.claims("TRANSIT-HSTS")
def check_leaves_one(known_secrets, evidence):
    canary = create_canary(Api(False), known_secrets, "keys")
    assert canary.remove(Api(False), known_secrets)
    evidence.conclude(Verdict.passed("made one, could not remove it"))
'''


@pytest.mark.parametrize("api", [False, True], ids=["no-api-section", "api-refusing"])
def test_a_canary_a_check_could_not_remove_is_a_cleanup_error_naming_it(pytester: pytest.Pytester,
                                                                         api: bool) -> None:
    # Given two checks: one removes its canary, one cannot (DELETE /account answers 500); with an
    # [api] section the run's last attempt meets an edge that refuses connections
    pytester.makepyfile(**{"area/canaries": CHECKS})
    pytester.makeini("[pytest]\npython_files = *.py\npython_functions = check_*\n")
    report = pytester.path / "report"
    pytester.runpytest(*audit_argv(unreachable_target(pytester.path, *(["[api]"] if api else [])), report))
    data = json.loads((report / "results.json").read_text())
    by_id = {r["finding_id"].split("/")[0] if r["check_id"] == CLEANUP else r["check_id"]: r
             for r in data["results"]}
    # Then both checks keep their verdicts, and the account left is one harness.cleanup ERROR by address
    assert {k: r["outcome"] for k, r in by_id.items()} == {
        "area.cleans_up": "PASS", "area.leaves_one": "PASS", CLEANUP: "ERROR"}
    cleanup = by_id[CLEANUP]
    assert cleanup["finding_id"].startswith(f"{CLEANUP}/canary+keys-")
    address = cleanup["finding_id"].split("/", 1)[1]
    assert cleanup["message"].startswith(f"the canary account {address} (keys, made by area.leaves_one at ")
    why = ("POST /login: cannot reach https://votriz.test:9: ConnectError" if api
           else "DELETE /account: expected HTTP 200/202/204, got 500")
    assert f"could not be removed: {why}" in cleanup["message"], cleanup["message"]
    assert data["summary"]["gate"] != "pass"
    # And the ledger is in the evidence: both accounts, one removed; no secret anywhere in the report
    ledger = json.loads((report / "evidence" / CLEANUP / "ledger.json").read_text())
    assert [(a["purpose"], a["state"], a["created_by"]) for a in ledger["accounts"]] == [
        ("transit", "removed", "area.cleans_up"), ("keys", "created", "area.leaves_one")]
    assert not (report / "LEAKS.txt").exists()
