"""The one canary account: made, registered and always removed (or said why not),
with a stand-in for the API."""

from __future__ import annotations

import contextlib
from typing import Any, ClassVar

import pytest

from harness.canaries import canary_account, create_canary
from harness.outcomes import ProbeError
from harness.policy import load_policy
from harness.probes import outbound
from harness.probes.api import ApiResponse
from harness.profile import TargetProfile
from harness.redaction import KnownSecrets


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

    def delete_account(self) -> ApiResponse:
        return self.expect((200, 202, 204), "DELETE", "/account")


def test_canary_whose_login_fails_after_signup_is_removed() -> None:
    # Given an API where the canary signs up but its first login times out
    api = _SignupThenLogin(failing_logins=1)
    # When the canary is made, the error goes up
    with pytest.raises(ProbeError) as raised:
        create_canary(api, KnownSecrets(), "keys")  # type: ignore[arg-type]
    # Then the account was removed first, and the error says so
    assert not api.account_exists
    assert str(raised.value) == ("POST /login: no answer within 5s; the canary account had been "
                                 "created, it was removed")


def test_canary_that_cannot_be_removed_is_reported_with_its_address() -> None:
    api = _SignupThenLogin(failing_logins=5)
    with pytest.raises(ProbeError) as raised:
        create_canary(api, KnownSecrets(), "keys")  # type: ignore[arg-type]
    assert api.account_exists
    message = str(raised.value)
    assert message.startswith("POST /login: no answer within 5s; the canary account had been "
                              "created, it could not be removed (POST /login: no answer within 5s): "
                              "delete canary+keys-")
    assert message.endswith("@audit.invalid by hand")
    # And a canary whose login works is returned logged in
    ok = _SignupThenLogin(failing_logins=0)
    canary = create_canary(ok, KnownSecrets(), "keys")  # type: ignore[arg-type]
    assert ok.account_exists and ok.token and canary.email.endswith("@audit.invalid")


def test_the_password_never_shows_in_a_repr() -> None:
    canary = create_canary(_SignupThenLogin(0), KnownSecrets(), "keys")  # type: ignore[arg-type]
    assert canary.password not in repr(canary) and canary.email in repr(canary)


class _OutboundApi(_SignupThenLogin):
    """The outbound probe's API: its canary signs up, then its login fails once."""

    made: ClassVar[list[_OutboundApi]] = []

    def __init__(self, profile: TargetProfile, *, timeout_s: float) -> None:
        super().__init__(failing_logins=1)
        _OutboundApi.made.append(self)

    def close(self) -> None:
        pass


class _NoCapture:
    def __init__(self, *args: Any) -> None:
        pass

    def close(self) -> None:
        pass


def test_the_outbound_probe_removes_a_canary_whose_login_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the outbound probe, whose canary signs up but cannot log in (this account used to stay)
    _OutboundApi.made.clear()
    monkeypatch.setattr(outbound, "VotrizApi", _OutboundApi)
    monkeypatch.setattr(outbound, "CaptureClient", _NoCapture)
    monkeypatch.setattr(outbound, "watching_the_wire", lambda *_: contextlib.nullcontext())
    profile = TargetProfile.model_validate({
        "name": "test", "edge": {"host": "votriz.test"}, "api": {},
        "capture": {"url": "https://127.0.0.1:9", "plaintext_port": 10}})
    # When it is observed, the error goes up
    with pytest.raises(ProbeError, match="the canary account had been created, it was removed"):
        outbound.observe_outbound(profile, load_policy(), KnownSecrets(), None)  # type: ignore[arg-type]
    # Then the account it signed up is gone
    assert [api.account_exists for api in _OutboundApi.made] == [False]


def test_canary_account_removes_after_the_block_and_says_when_it_cannot() -> None:
    api = _SignupThenLogin(failing_logins=0)
    with canary_account(api, KnownSecrets(), "keys"):  # type: ignore[arg-type]
        assert api.account_exists
    assert not api.account_exists
    # A block that fails leaves no account behind either, and its own error goes up
    api = _SignupThenLogin(failing_logins=0)
    with pytest.raises(ProbeError, match="GET /brands: got 500"), \
            canary_account(api, KnownSecrets(), "keys"):  # type: ignore[arg-type]
        raise ProbeError("GET /brands: got 500")
    assert not api.account_exists
    # An account that cannot be removed is an error naming it
    stuck = _SignupThenLogin(failing_logins=0)
    with pytest.raises(ProbeError, match=r"could not be removed .*: delete canary\+keys-.* by hand"), \
            canary_account(stuck, KnownSecrets(), "keys"):  # type: ignore[arg-type]
        stuck.token, stuck.failing_logins = None, 5
    assert stuck.account_exists


def test_the_canary_reads_its_mails_with_the_one_capture_client() -> None:
    from harness.canaries import MailCapture
    from harness.probes.capture import CaptureClient

    # Given a profile without a [capture] section, Then the canary says what it cannot read
    bare = TargetProfile.model_validate({"name": "t", "edge": {"host": "votriz.test"}})
    with pytest.raises(ProbeError, match=r"^the profile has no \[capture\] section: cannot read "
                                         r"the recovery mail$"):
        MailCapture(bare, load_policy())
    # And with one, its mail reader is the capture API's one client (no mails_to of its own)
    profile = TargetProfile.model_validate({
        "name": "t", "edge": {"host": "votriz.test"},
        "capture": {"url": "https://127.0.0.1:9", "plaintext_port": 10}})
    mail = MailCapture(profile, load_policy())
    try:
        assert isinstance(mail, CaptureClient)
        assert "mails_to" not in vars(MailCapture)
    finally:
        mail.close()


# --- Where the canary's mail is read (harness.canary_mail) ------------------------------------------

_EDGE = {"name": "t", "edge": {"host": "votriz.test"}, "api": {}}
_CAPTURE = {"url": "https://127.0.0.1:9443"}
_MAILBOX = {"host": "127.0.0.1", "user": "audit", "address": "audit@mail.example",
            "password": {"file": "/run/secrets/imap"}}


@pytest.mark.parametrize(("sections", "reader", "address"), [
    ({"capture": _CAPTURE, "mailbox": _MAILBOX}, "MailCapture", "canary+run1@audit.invalid"),
    ({"mailbox": _MAILBOX}, "MailboxClient", "audit+canary-run1@mail.example"),
    ({}, "NoneType", "canary+run1@audit.invalid"),
])
def test_the_canary_reads_its_mail_where_the_profile_allows(sections: dict[str, Any], reader: str,
                                                           address: str) -> None:
    from harness.canary_mail import canary_address, canary_mail_reader, recovery_mail_unavailable

    profile = TargetProfile.model_validate({**_EDGE, **sections})
    found = canary_mail_reader(profile, load_policy())
    try:
        assert type(found).__name__ == reader
        # The address reaches the place the mail is read from (a reserved TLD otherwise)
        assert canary_address(profile, "RUN1") == address
        assert (recovery_mail_unavailable(profile) is None) == bool(sections)
    finally:
        if found is not None:
            found.close()


def test_a_canary_without_a_mail_reader_is_made_without_a_recovery_mail() -> None:
    from harness.canaries import CanarySession, canary_refused

    # Given an API that answers every planting step, and no place to read mail
    class Api(_SignupThenLogin):
        def mfa_setup(self) -> ApiResponse:
            return ApiResponse(200, {"totp_secret": "JBSWY3DPEHPK3PXP", "backup_codes": ["code-0001", "code-0002"]}, {})

        def mfa_status(self) -> ApiResponse:
            return ApiResponse(200, {"enabled": True}, {})

        def create_brand(self, name: str, kind: str) -> int:
            return 7

        def create_channel(self, brand: int, platform: str, access: str, refresh: str) -> int:
            return len(platform)

        def signup(self, email: str, password: str) -> ApiResponse:
            self.account_exists = True
            return ApiResponse(201, {"id": 41}, {})

        def request_recovery(self, email: str) -> ApiResponse:
            raise AssertionError("no recovery mail may be asked for when none can be read")

        def request(self, method: str, path: str, json: object = None, **kw: object) -> ApiResponse:
            if (method, path) == ("GET", "/mfa") and self.token is not None:
                return ApiResponse(200, {}, {})
            return super().request(method, path, json, **kw)

        def close(self) -> None:
            pass

    api = Api(failing_logins=0)
    session = CanarySession(api, None, KnownSecrets(), api_factory=lambda: api)  # type: ignore[arg-type]
    with session as canary:
        # Then everything else is planted, and a fresh recovery mail is refused in one line
        assert canary.user_id == 41 and len(canary.backup_codes) == 2 and canary.recovery is None
        with pytest.raises(ProbeError, match=r"the profile names no \[mailbox\]"):
            session.fresh_recovery()
    assert canary.removed
    assert canary_refused(TargetProfile.model_validate(_EDGE)) is None
    assert "api.canaries = false" in str(canary_refused(TargetProfile.model_validate(
        {**_EDGE, "api": {"canaries": False}})))
