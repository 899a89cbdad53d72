"""Canary accounts: known secrets planted through the API, then looked for at rest.

Each run makes one canary account with fresh random values: an e-mail address,
a password, a TOTP secret and ten MFA backup codes, one channel per platform with
its own access and refresh tokens, and, when the profile names a place to read
its mail (:mod:`harness.canary_mail`: an IMAP ``[mailbox]``, or the fakes'
``[capture]``), a recovery token read from the mail the service sends. Without
one, the canary is made all the same, without the recovery mail. Every value is
registered in :class:`~harness.redaction.KnownSecrets` the moment it exists,
before anything could write it to a report. :func:`planted_canary` makes it as
the profile allows.

:class:`CanarySession` deletes the account at the end (``DELETE /account``),
also when creating it failed half-way, logging in again with the TOTP secret
if the session was invalidated in between (a JWT rotation does that).

:class:`CanaryAccount` is the plain account the other checks use (a key
rotation, the outbound calls): :func:`create_canary` signs it up and logs it
in, removing it again when the login fails after the signup;
:meth:`CanaryAccount.remove` deletes it, logging in again if its session is
no longer valid, and says why when it cannot; :func:`canary_account` does
both around a block and raises when the account could not be removed.

Every account goes through the run's ledger (:mod:`harness.canary_ledger`): its
entry is written the moment its signup request is about to be sent and closed
when its removal is confirmed; the run ends by reconciling it, so an account
left behind is reported by the run, whichever path made it.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from harness.canary_ledger import CanaryLedger, CanaryState, LedgerEntry, run_ledger
from harness.canary_mail import (
    CANARY_DOMAIN,
    CanaryMailReader,
    DeletesMail,
    MailCapture,
    RecoveryMail,
    canary_address,
    canary_mail_reader,
    mail_place,
    recovery_mail_unavailable,
    recovery_token_from_mail,
)
from harness.outcomes import ProbeError
from harness.policy import Policy
from harness.probes.api import VotrizApi
from harness.profile import TargetProfile
from harness.redaction import KnownSecrets
from harness.totp import totp_now

#: The platforms the page names, in its order.
PLATFORMS = ("instagram", "linkedin", "twitter", "tiktok", "youtube")
BACKUP_CODES_PROMISED = 10
# Re-exported: the mail side of the canary lives in harness.canary_mail.
__all__ = ["CANARY_DOMAIN", "MailCapture", "RecoveryMail", "canary_address",
           "recovery_mail_unavailable", "recovery_token_from_mail"]


def canary_email(run_id: str) -> str:
    """The canary's address for a run under the reserved TLD (see :func:`canary_address`)."""
    return f"canary+{run_id.lower()}@{CANARY_DOMAIN}"


def canary_refused(profile: TargetProfile) -> str | None:
    """Why the profile allows no canary account, or None (a canary needs no mail)."""
    if profile.api is None:
        return "the profile has no [api] section, so no canary account can be made"
    if not profile.api.canaries:
        return "the profile does not allow canary accounts (api.canaries = false)"
    return None


@dataclass(frozen=True)
class CanaryChannel:
    """One channel the canary connected, with the tokens it handed in.

    Attributes:
        platform: one of :data:`PLATFORMS`.
        channel_id: the row id the API answered.
        access_token: the OAuth access token handed in (a secret).
        refresh_token: the OAuth refresh token handed in (a secret).
    """

    platform: str
    channel_id: int
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)


@dataclass
class Canary:
    """Everything the canary planted and observed while planting.

    Attributes:
        run_id: the run this canary belongs to.
        email: its address.
        password: its password (a secret).
        user_id: its ``users.id``, or None before signup succeeded.
        totp_secret: its TOTP secret once MFA is set up (a secret).
        backup_codes: the codes ``POST /mfa/setup`` answered (secrets).
        mfa_status_body: the body of ``GET /mfa`` right after setup.
        brand_id: its brand's id.
        channels: one per platform.
        recovery_request_body: the body of ``POST /recovery/request``.
        recovery: the recovery mail, once read.
        removed: whether the account was deleted at the end.
        cleanup_note: what happened at clean-up.
    """

    run_id: str
    email: str
    password: str = field(repr=False)
    user_id: int | None = None
    totp_secret: str | None = field(default=None, repr=False)
    backup_codes: tuple[str, ...] = field(default=(), repr=False)
    mfa_status_body: Any = field(default=None, repr=False)
    brand_id: int | None = None
    channels: tuple[CanaryChannel, ...] = ()
    recovery_request_body: Any = field(default=None, repr=False)
    recovery: RecoveryMail | None = None
    removed: bool = False
    cleanup_note: str = ""

    def channel(self, platform: str) -> CanaryChannel | None:
        return next((c for c in self.channels if c.platform == platform), None)

    def summary(self) -> dict[str, Any]:
        """What the canary is, without any secret (for evidence)."""
        return {
            "run_id": self.run_id, "email_domain": self.email.rpartition("@")[2],
            "user_id": self.user_id,
            "backup_codes": len(self.backup_codes), "brand_id": self.brand_id,
            "channels": {c.platform: c.channel_id for c in self.channels},
            "recovery_mail": self.recovery is not None and self.recovery.token is not None,
            "removed": self.removed, "cleanup": self.cleanup_note,
        }


@dataclass(frozen=True)
class CanaryAccount:
    """A throw-away account the harness signed up through the API.

    Attributes:
        email: its address, ``canary+<purpose>-<random>@audit.invalid``.
        password: its password; registered in KnownSecrets before the signup.
        entry: its entry in the run's ledger (None for an account made without one).
    """

    email: str
    password: str = field(repr=False)
    entry: LedgerEntry | None = field(default=None, repr=False, compare=False)
    ledger: CanaryLedger | None = field(default=None, repr=False, compare=False)

    def remove(self, api: VotrizApi, known_secrets: KnownSecrets) -> str:
        """Delete the account, logging in again if its session is no longer valid; the
        ledger entry is closed, or keeps why not.

        Returns '' once the account is gone, else why the last attempt failed (never raises).
        """
        left = self._remove(api, known_secrets)
        if self.entry is not None and self.ledger is not None:
            if left:
                self.ledger.removal_failed(self.entry, left)
            else:
                self.ledger.removed(self.entry)
        return left

    def _remove(self, api: VotrizApi, known_secrets: KnownSecrets) -> str:
        if self.entry is not None and self.entry.state is CanaryState.REMOVED:
            return ""  # The run's reconciliation removed it already.
        try:
            api.delete_account()
            return ""
        except ProbeError:
            pass  # The session may be invalid (a JWT secret rotation): log in and try again.
        try:
            known_secrets.add(api.login(self.email, self.password), "canary session token")
            api.delete_account()
        except ProbeError as exc:
            return str(exc)
        return ""

    def delete(self, api: VotrizApi, known_secrets: KnownSecrets) -> None:
        """Remove the account (as :meth:`remove`).

        Raises:
            ProbeError: it could not be removed, naming the address to delete by hand.
        """
        left = self.remove(api, known_secrets)
        if left:
            raise ProbeError(f"the canary account could not be removed ({left}): "
                             f"delete {self.email} by hand")

    @contextmanager
    def removed_on_failure(self, api: VotrizApi, known_secrets: KnownSecrets) -> Iterator[None]:
        """Remove the account when the block raises, whatever stopped it.

        Raises:
            ProbeError: the block's own ProbeError, saying also that the account
                could not be removed when it could not.
        """
        try:
            yield
        except BaseException as exc:
            # Whatever stopped the block (a command that cannot start, an edge that stops
            # answering), the canary account must not stay behind in the audited system.
            left = self.remove(api, known_secrets)
            if left and isinstance(exc, ProbeError):
                raise ProbeError(f"{exc}; the canary account could not be removed either: {left}") from None
            raise


def create_canary(api: VotrizApi, known_secrets: KnownSecrets, purpose: str,
                  ledger: CanaryLedger | None = None) -> CanaryAccount:
    """Sign up and log in a fresh canary account, never leaving it behind unsaid.

    Its password is registered before the signup, its entry written to the
    ledger (default: the run's) right before the signup request, its session
    token registered when it arrives. If the login fails after the signup, the
    account exists already: it is removed (logging in again), and the
    ProbeError says whether that worked, with the account's address when it
    must be deleted by hand.

    Raises:
        ProbeError: the signup or the login failed.
    """
    ledger = ledger if ledger is not None else run_ledger()
    # A reserved TLD (RFC 6761), like the at-rest canary: no mail can ever leave.
    email, password = f"canary+{purpose}-{secrets.token_hex(6)}@{CANARY_DOMAIN}", secrets.token_urlsafe(24)
    known_secrets.add(password, "canary password")
    entry = ledger.signup_about_to_be_sent(email, password, purpose)
    canary = CanaryAccount(email=email, password=password, entry=entry, ledger=ledger)
    try:
        answer = api.signup(canary.email, canary.password)
    except ProbeError as exc:
        ledger.signup_failed(entry, exc)
        raise
    user_id = answer.body.get("id") if isinstance(answer.body, dict) else None
    ledger.signup_answered(entry, user_id if isinstance(user_id, int) else None)
    try:
        known_secrets.add(api.login(canary.email, canary.password), "canary session token")
    except ProbeError as exc:
        left = canary.remove(api, known_secrets)
        fate = ("it was removed" if not left else
                f"it could not be removed ({left}): delete {canary.email} by hand")
        raise ProbeError(f"{exc}; the canary account had been created, {fate}") from None
    return canary


@contextmanager
def canary_account(api: VotrizApi, known_secrets: KnownSecrets, purpose: str,
                   ledger: CanaryLedger | None = None) -> Iterator[CanaryAccount]:
    """A fresh canary account, logged in on ``api`` for the block and removed after it.

    Raises:
        ProbeError: the account could not be made, or could not be removed
            (naming the address to delete by hand); when the block itself
            raised a ProbeError, one error says both.
    """
    canary = create_canary(api, known_secrets, purpose, ledger)
    with canary.removed_on_failure(api, known_secrets):
        yield canary
    canary.delete(api, known_secrets)


def canary_session_token(profile: TargetProfile, policy: Policy, known_secrets: KnownSecrets,
                         purpose: str) -> str:
    """A session token the service issued to a fresh canary (removed again before this returns).

    Raises:
        ProbeError: the canary could not be made or removed, or the login gave no token.
    """
    with VotrizApi(profile, timeout_s=policy.timeouts.request_s) as api, \
            canary_account(api, known_secrets, purpose):
        if api.token is None:
            raise ProbeError("POST /login: the answer holds no token")
        return api.token


def _new_token(kind: str, platform: str) -> str:
    # A '.' keeps a leaked token from ever parsing as base64 by accident, so a
    # plaintext cell fails as "not base64", and real OAuth tokens have dots too.
    return f"canary.{kind}.{platform}.{secrets.token_urlsafe(24)}"


class CanarySession:
    """Create the canary on enter, remove it on exit (also after a failure).

    Attributes:
        canary: the canary, as far as it got.
    """

    def __init__(self, api: VotrizApi, mail: CanaryMailReader | None, known_secrets: KnownSecrets, *,
                 run_id: str | None = None, email: Callable[[str], str] = canary_email,
                 mail_wait_s: float = 10.0,
                 ready_wait_s: float = 30.0,
                 api_factory: Callable[[], VotrizApi] | None = None,
                 ledger: CanaryLedger | None = None) -> None:
        self._api = api
        self._ledger = ledger if ledger is not None else run_ledger()
        self._entry: LedgerEntry | None = None
        self._ready_wait_s = ready_wait_s
        self._api_factory = api_factory or (lambda: VotrizApi(api.profile))
        self._mail = mail
        self._known = known_secrets
        self._mail_wait_s = mail_wait_s
        run = run_id or uuid.uuid4().hex[:12]
        password = "Cn-" + secrets.token_urlsafe(24)
        self.canary = Canary(run_id=run, email=email(run), password=password)
        known_secrets.add(self.canary.email, "canary e-mail")
        known_secrets.add(password, "canary password")

    def __enter__(self) -> Canary:
        try:
            self._plant()
        except BaseException:
            self.remove()
            raise
        return self.canary

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def _secret(self, value: str, label: str) -> str:
        self._known.add(value, label)
        return value

    def _wait_until_answering(self) -> None:
        """Wait (bounded) until the API itself answers, not only the edge.

        A freshly started or restarting service answers 502/503 at the edge for a
        moment; planting must not start then, as a non-idempotent signup cannot
        simply be retried.
        """
        deadline = time.monotonic() + self._ready_wait_s
        while True:
            try:
                status = self._api.request("GET", "/mfa", auth=False).status
            except ProbeError:
                status = 0
            if status not in (0, 502, 503, 504) or time.monotonic() >= deadline:
                return
            time.sleep(0.5)

    def _plant(self) -> None:
        self._wait_until_answering()
        api, canary = self._api, self.canary
        # Its address is a known secret (looked for at rest): the ledger names it by id.
        self._entry = entry = self._ledger.signup_about_to_be_sent(
            canary.email, canary.password, "at_rest", address_is_secret=True)
        try:
            answer = api.signup(canary.email, canary.password)
        except ProbeError as exc:
            self._ledger.signup_failed(entry, exc)
            raise
        user_id = answer.body.get("id") if isinstance(answer.body, dict) else None
        self._ledger.signup_answered(entry, user_id if isinstance(user_id, int) else None)
        if not isinstance(user_id, int):
            raise ProbeError("POST /signup: the answer holds no id")
        canary.user_id = user_id
        self._secret(api.login(canary.email, canary.password), "canary session token")

        setup = api.mfa_setup().body
        totp = setup.get("totp_secret") if isinstance(setup, dict) else None
        codes = setup.get("backup_codes") if isinstance(setup, dict) else None
        if not isinstance(totp, str) or not isinstance(codes, list):
            raise ProbeError("POST /mfa/setup: the answer holds no TOTP secret or no backup codes")
        canary.totp_secret = self._secret(totp, "canary TOTP secret")
        self._ledger.mfa_on(entry, totp)
        canary.backup_codes = tuple(self._secret(str(code), f"canary backup code {i + 1}")
                                    for i, code in enumerate(codes))
        canary.mfa_status_body = api.mfa_status().body

        canary.brand_id = api.create_brand(f"votriz-audit canary {canary.run_id}", "audit")
        channels = []
        for platform in PLATFORMS:
            access = self._secret(_new_token("at", platform), f"canary {platform} access token")
            refresh = self._secret(_new_token("rt", platform), f"canary {platform} refresh token")
            channel_id = api.create_channel(canary.brand_id, platform, access, refresh)
            channels.append(CanaryChannel(platform, channel_id, access, refresh))
        canary.channels = tuple(channels)

        # Without a place to read its mail, the canary has no recovery mail; all else stands.
        if self._mail is not None:
            self.fresh_recovery()

    def _read_recovery_mail(self, mail: CanaryMailReader, before: int) -> RecoveryMail:
        deadline = time.monotonic() + self._mail_wait_s
        while True:
            mails = mail.mails_to(self.canary.email)
            if len(mails) > before or time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        if len(mails) <= before:
            raise ProbeError(f"no recovery mail reached {mail_place(mail)} for the canary within "
                             f"{self._mail_wait_s:g} s")
        newest = mails[-1]
        host, token = recovery_token_from_mail(str(newest.get("text", "")))
        if token is not None:
            self._secret(token, "canary recovery token")
        # Read, the mails leave the team's mailbox (the fakes' capture keeps its own).
        if isinstance(mail, DeletesMail):
            mail.delete_mails_to(self.canary.email)
        return RecoveryMail(str(newest.get("subject", "")), host, token, len(mails))

    @property
    def api(self) -> VotrizApi:
        """The API client, logged in as the canary."""
        return self._api

    def reconnect(self) -> None:
        """Drop every kept-alive connection and carry on with fresh ones.

        Reading the HSM in this process (SoftHSM's C_Finalize/C_Initialize, which
        share OpenSSL with Python's ssl module) breaks TLS connections kept
        alive from before: a later request on one fails with a ReadError. Fresh
        connections are not affected, so each check starts with new ones rather
        than retrying requests that are not idempotent.
        """
        token = self._api.token
        self._api.close()
        self._api = self._api_factory()
        self._api.token = token
        if self._mail is not None:
            self._mail.reconnect()

    def ensure_session(self) -> None:
        """Fresh connections and a valid session for the calls that follow.

        A session invalidated in between (a JWT secret rotation) is replaced by
        logging in again.
        """
        self.reconnect()
        if self._api.request("GET", "/mfa").status == 401:
            self._login_again()

    def fresh_recovery(self) -> RecoveryMail:
        """Ask for a new recovery mail and read its token (registered as a secret).

        Raises:
            ProbeError: there is no place to read the canary's mail from, the request
                failed, or no mail arrived in time.
        """
        canary, mail = self.canary, self._mail
        if mail is None:
            raise ProbeError("the canary's recovery mail cannot be read: the profile names no "
                             "[mailbox]")
        self.ensure_session()
        before = len(mail.mails_to(canary.email))
        canary.recovery_request_body = self._api.request_recovery(canary.email).body
        canary.recovery = self._read_recovery_mail(mail, before)
        return canary.recovery

    def remove(self) -> None:
        """Delete the canary's account (idempotent); the outcome is in ``cleanup_note`` and the
        ledger.

        An account whose signup had no answer may exist: it is removed by logging in.
        """
        canary, entry = self.canary, self._entry
        if entry is not None and entry.state is CanaryState.REMOVED and not canary.removed:
            canary.removed, canary.cleanup_note = True, "removed by the run's clean-up"
        if canary.removed or entry is None or entry.state is CanaryState.NOT_CREATED:
            canary.cleanup_note = canary.cleanup_note or "nothing to remove"
            return
        try:
            self.ensure_session()
            # ensure_session replaced the client: use the new one.
            answer = self._api.request("DELETE", "/account")
            if answer.status == 401:
                # The session may have been invalidated (a JWT secret rotation): log in again.
                self._login_again()
                answer = self._api.request("DELETE", "/account")
            canary.removed = answer.status in (200, 202, 204)
            canary.cleanup_note = f"DELETE /account answered {answer.status}"
        except (ProbeError, RuntimeError) as exc:
            canary.cleanup_note = f"clean-up failed: {exc}"
        if canary.removed:
            self._ledger.removed(entry)
        else:
            self._ledger.removal_failed(entry, canary.cleanup_note)

    def _login_again(self) -> None:
        canary, api = self.canary, self._api
        if canary.totp_secret:
            token = api.login_with_totp(canary.email, canary.password,
                                        totp_now(canary.totp_secret))
        else:
            token = api.login(canary.email, canary.password)
        self._secret(token, "canary session token")



@contextmanager
def planted_canary(profile: TargetProfile, policy: Policy,
                   known_secrets: KnownSecrets) -> Iterator[CanarySession]:
    """The run's canary, made as the profile allows (its mail read from the ``[mailbox]``, the
    ``[capture]``, or not at all) and removed at the block's end; an account left behind is
    the ledger's to report."""
    def new_api() -> VotrizApi:
        return VotrizApi(profile, timeout_s=policy.timeouts.request_s)

    mail = canary_mail_reader(profile, policy)
    session = CanarySession(new_api(), mail, known_secrets, api_factory=new_api,
                            email=lambda run_id: canary_address(profile, run_id))
    try:
        with session:
            yield session
    finally:
        if mail is not None:
            mail.close()
        session.api.close()
