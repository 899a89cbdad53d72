"""The canary ledger: every account the harness makes in the audited system, from before
its signup to its confirmed removal.

An entry is written the moment an account's signup request is about to be sent,
before anything else happens to it, so an account whose signup answer was lost
is still listed; it is closed when ``DELETE /account`` is answered 2xx, or when the
service refused the signup (HTTP 4xx: no account was made). Every path that makes
an account (:mod:`harness.canaries`: the at-rest canary session, the keys and
rotation canaries, the outbound probe's) goes through the run's ledger
(:func:`run_ledger`).

The run ends with :func:`reconcile_canaries`: one more removal attempt for each
entry still open, within the policy's deadlines. The plugin reports what remains
as ``harness.cleanup/<account>`` ERROR and writes :meth:`CanaryLedger.as_evidence`
(ids, purposes, times, never a password or a secret address) to
``evidence/harness.cleanup/ledger.json``.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.evidence import EvidenceRecorder
from harness.outcomes import Outcome, ProbeError
from harness.policy import Policy
from harness.probes.api import VotrizApi
from harness.profile import TargetProfile
from harness.redaction import KnownSecrets, fingerprint
from harness.results import CheckResult
from harness.totp import totp_now


class CanaryState(enum.StrEnum):
    """Where a ledger entry's account stands.

    Attributes:
        SIGNUP_SENT: the signup request was about to be sent; no answer seen (it may exist).
        CREATED: the service answered the signup: the account exists.
        NOT_CREATED: the service refused the signup (HTTP 4xx): no account was made.
        REMOVED: ``DELETE /account`` was answered 2xx: the account is gone.
    """

    SIGNUP_SENT = "signup sent"
    CREATED = "created"
    NOT_CREATED = "not created"
    REMOVED = "removed"


#: The states whose account may still be in the audited system.
OPEN_STATES = (CanaryState.SIGNUP_SENT, CanaryState.CREATED)
_SIGNUP_REFUSED = re.compile(r"expected HTTP [0-9/]+, got 4[0-9][0-9]")


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class LedgerEntry:
    """One account the harness made, or was about to make, in the audited system.

    Attributes:
        address: its e-mail address.
        purpose: what it is for (``at_rest``, ``keys``, ``transit``).
        created_by: the check that was running when it was made ('' outside a check).
        created_at: when its signup request was about to be sent.
        address_is_secret: its address is a known secret (the at-rest canary, looked for at
            rest): reported by ``users.id`` or fingerprint, never by address.
        state: where it stands.
        user_id: its ``users.id`` once the signup answered with one.
        removed_at: when its removal was confirmed.
        note: what the last removal attempt said ('' when none failed).
        password: its password (a secret, only for the last removal attempt; never written).
        totp_secret: its TOTP secret once MFA is on (a secret, as ``password``).
    """

    address: str
    purpose: str
    created_by: str
    created_at: dt.datetime
    address_is_secret: bool = False
    state: CanaryState = CanaryState.SIGNUP_SENT
    user_id: int | None = None
    removed_at: dt.datetime | None = None
    note: str = ""
    password: str = field(default="", repr=False)
    totp_secret: str | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        """How reports name the account: its address, or for a secret one its id or fingerprint."""
        if not self.address_is_secret:
            return self.address
        return f"users.id {self.user_id}" if self.user_id is not None else \
            f"canary address {fingerprint(self.address)}"

    def as_evidence(self) -> dict[str, Any]:
        """The entry without any secret (a secret address by :attr:`name` only)."""
        return {"account": self.name, "purpose": self.purpose, "created_by": self.created_by,
                "created_at": self.created_at.isoformat(), "state": self.state.value,
                "user_id": self.user_id,
                "removed_at": self.removed_at.isoformat() if self.removed_at else None,
                "note": self.note}


class CanaryLedger:
    """Every canary account of one run, written before its signup and closed at its removal.

    Thread-safe (rotation loads run in threads). ``current_check`` is set by the plugin
    while a check runs, so each entry names the check that made it.

    Attributes:
        current_check: the running check's id ('' between checks).
    """

    def __init__(self, now: Callable[[], dt.datetime] = _utc_now) -> None:
        self._now = now
        self._lock = threading.Lock()
        self._entries: list[LedgerEntry] = []
        self.current_check = ""

    def signup_about_to_be_sent(self, address: str, password: str, purpose: str, *,
                                address_is_secret: bool = False) -> LedgerEntry:
        """Record an account before its signup request leaves (call nothing else in between)."""
        entry = LedgerEntry(address, purpose, self.current_check, self._now(), address_is_secret,
                            password=password)
        with self._lock:
            self._entries.append(entry)
        return entry

    def signup_answered(self, entry: LedgerEntry, user_id: int | None = None) -> None:
        """The service answered the signup: the account exists."""
        with self._lock:
            entry.state, entry.user_id = CanaryState.CREATED, user_id

    def signup_failed(self, entry: LedgerEntry, error: ProbeError) -> None:
        """The signup raised: a refusal (HTTP 4xx) made no account; anything else may have."""
        if _SIGNUP_REFUSED.search(str(error)):
            with self._lock:
                entry.state, entry.note = CanaryState.NOT_CREATED, str(error)

    def mfa_on(self, entry: LedgerEntry, totp_secret: str) -> None:
        """The account's logins now need a code from this secret."""
        entry.totp_secret = totp_secret

    def removed(self, entry: LedgerEntry) -> None:
        """``DELETE /account`` was answered 2xx."""
        with self._lock:
            entry.state, entry.removed_at, entry.note = CanaryState.REMOVED, self._now(), ""

    def removal_failed(self, entry: LedgerEntry, why: str) -> None:
        """A removal attempt failed; the entry stays open."""
        with self._lock:
            entry.note = why

    @property
    def entries(self) -> list[LedgerEntry]:
        with self._lock:
            return list(self._entries)

    def open_entries(self) -> list[LedgerEntry]:
        """The accounts that may still be in the audited system."""
        return [entry for entry in self.entries if entry.state in OPEN_STATES]

    def as_evidence(self) -> dict[str, Any]:
        """The ledger as written to ``evidence/harness.cleanup/ledger.json`` (no secret)."""
        entries = [entry.as_evidence() for entry in self.entries]
        return {"accounts": entries,
                "left": sum(1 for entry in self.entries if entry.state in OPEN_STATES)}


_RUN_LEDGER = CanaryLedger()


def run_ledger() -> CanaryLedger:
    """The current run's ledger (outside a run: one for the process)."""
    return _RUN_LEDGER


def start_run_ledger(now: Callable[[], dt.datetime] = _utc_now) -> CanaryLedger:
    """A fresh ledger for a new run, current from now on (the plugin calls it at start)."""
    global _RUN_LEDGER
    _RUN_LEDGER = CanaryLedger(now)
    return _RUN_LEDGER


def remove_by_login(api: VotrizApi, entry: LedgerEntry) -> str:
    """Log in as the entry's account and delete it; '' once gone, else why not (never raises)."""
    try:
        if entry.totp_secret:
            api.login_with_totp(entry.address, entry.password, totp_now(entry.totp_secret))
        else:
            api.login(entry.address, entry.password)
        api.delete_account()
    except ProbeError as exc:
        return str(exc)
    return ""


def reconcile_canaries(ledger: CanaryLedger, profile: TargetProfile, policy: Policy,
                       known_secrets: KnownSecrets, *,
                       remove: Callable[[VotrizApi, LedgerEntry], str] = remove_by_login,
                       clock: Callable[[], float] = time.monotonic) -> list[LedgerEntry]:
    """One more removal attempt for every open entry; returns those still open.

    Each attempt is a login and ``DELETE /account``, each request within
    ``timeouts.request_s``; no attempt starts once ``timeouts.command_s`` have passed
    (the entries left then say so).
    """
    pending = ledger.open_entries()
    if not pending or profile.api is None:
        return pending
    deadline = clock() + policy.timeouts.command_s
    for entry in pending:
        if clock() >= deadline:
            ledger.removal_failed(entry, f"{entry.note + '; ' if entry.note else ''}not tried again: "
                                         f"the clean-up's {policy.timeouts.command_s:g} s "
                                         f"(timeouts.command_s) were used up")
            continue
        try:
            with VotrizApi(profile, timeout_s=policy.timeouts.request_s) as api:
                why = remove(api, entry)
                if api.token:
                    known_secrets.add(api.token, "canary session token")
        except ProbeError as exc:
            why = str(exc)
        if why:
            ledger.removal_failed(entry, why)
        else:
            ledger.removed(entry)
    return ledger.open_entries()


#: The run-level id of the canary clean-up, and the folder of its evidence.
CLEANUP = "harness.cleanup"


def cleanup_results(ledger: CanaryLedger, profile: TargetProfile, policy: Policy,
                    known_secrets: KnownSecrets, report_dir: Path) -> list[CheckResult]:
    """The run's last word on its canaries: reconcile the ledger, write it to
    ``evidence/harness.cleanup/ledger.json``, and return one ``harness.cleanup/<account>``
    ERROR for each account that may still be in the audited system (none when the run
    made no canary)."""
    if not ledger.entries:
        return []
    try:
        left = reconcile_canaries(ledger, profile, policy, known_secrets)
    except Exception as exc:  # the clean-up's own defect must not hide the accounts it leaves
        left = ledger.open_entries()
        for entry in left:
            ledger.removal_failed(entry, f"the clean-up itself failed ({type(exc).__name__})")
    recorder = EvidenceRecorder(CLEANUP, report_dir / "evidence" / CLEANUP, known_secrets)
    recorder.attach("ledger", ledger.as_evidence())
    evidence = tuple(f"evidence/{CLEANUP}/{name}" for name in recorder.attachments)
    results = []
    for entry in left:
        made = f"made by {entry.created_by}" if entry.created_by else "made outside any check"
        message = (f"the canary account {entry.name} ({entry.purpose}, {made} at "
                   f"{entry.created_at:%Y-%m-%d %H:%M:%S} UTC, {entry.state.value}) could not be "
                   f"removed: {entry.note or 'no removal was confirmed'}; delete it by hand")
        results.append(CheckResult(finding_id=f"{CLEANUP}/{entry.name}", check_id=CLEANUP, claims=(),
                                   outcome=Outcome.ERROR, message=known_secrets.redact(message),
                                   evidence=evidence))
    return results
