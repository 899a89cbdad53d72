"""The canary account the at-rest checks follow: planted, registered, always removed."""

from __future__ import annotations

import pytest

from harness.canaries import recovery_token_from_mail
from harness.redaction import KnownSecrets


def test_recovery_token_read_from_mail() -> None:
    text = "Use this link:\nhttps://votriz.test:8443/recover?email=a%40b.c&token=abc_DEF-123\n"
    assert recovery_token_from_mail(text) == ("https://votriz.test:8443", "abc_DEF-123")
    assert recovery_token_from_mail("no link") == ("", None)


class _FakeApi:
    """Just enough of VotrizApi for CanarySession, failing at a chosen step."""

    profile = None

    def __init__(self, fail_at: str = "", log: list[str] | None = None) -> None:
        self.fail_at = fail_at
        self.token: str | None = None
        self.log = log if log is not None else []

    def _step(self, name: str, body: object) -> object:
        from harness.outcomes import ProbeError
        from harness.probes.api import ApiResponse

        self.log.append(name)
        if name == self.fail_at:
            raise ProbeError(f"{name}: expected HTTP 201, got 500")
        return ApiResponse(200, body, {})

    def signup(self, email: str, password: str) -> object:
        return self._step("signup", {"id": 41})

    def login(self, email: str, password: str) -> str:
        self._step("login", {})
        self.token = "session-token-abcdef"
        return self.token

    def mfa_setup(self) -> object:
        return self._step("mfa_setup", {"totp_secret": "JBSWY3DPEHPK3PXP",
                                         "backup_codes": [f"code{i}-xxxxx" for i in range(10)]})

    def mfa_status(self) -> object:
        return self._step("mfa_status", {"enabled": True})

    def create_brand(self, name: str, industry: str) -> int:
        self._step("create_brand", {})
        return 7

    def create_channel(self, brand_id: int, platform: str, access: str, refresh: str) -> int:
        self._step(f"channel {platform}", {})
        return 100 + len(self.log)

    def request_recovery(self, email: str) -> object:
        return self._step("request_recovery", {"status": "accepted"})

    def request(self, method: str, path: str, json: object = None, **kw: object) -> object:
        return self._step(f"{method} {path}", {})

    def close(self) -> None:
        self.log.append("close")


class _FakeMail:
    def __init__(self) -> None:
        self.reads = 0

    def mails_to(self, address: str) -> list[dict[str, object]]:
        # One more mail at each read: the request's mail "arrives" between two reads.
        self.reads += 1
        return [{"seq": i, "subject": "Recover", "text": "https://h/recover?token=tok-123456789"}
                for i in range(self.reads)]

    def reconnect(self) -> None:
        pass


@pytest.mark.parametrize("fail_at", ["mfa_setup", "channel tiktok", "request_recovery"])
def test_canary_is_removed_even_when_planting_fails(fail_at: str) -> None:
    from harness.canaries import CanarySession
    from harness.outcomes import ProbeError

    log: list[str] = []
    known = KnownSecrets()
    session = CanarySession(_FakeApi(fail_at, log), _FakeMail(), known,  # type: ignore[arg-type]
                            api_factory=lambda: _FakeApi(fail_at, log))  # type: ignore[arg-type,return-value]
    with pytest.raises(ProbeError), session:
        pass
    assert log[-1] == "DELETE /account"
    assert session.canary.removed and session.canary.cleanup_note == "DELETE /account answered 200"
    assert b"session-token-abcdef" in dict(known.items())


def test_canary_planted_and_registered_then_removed() -> None:
    from harness.canaries import PLATFORMS, CanarySession

    log: list[str] = []
    known = KnownSecrets()
    session = CanarySession(_FakeApi("", log), _FakeMail(), known,  # type: ignore[arg-type]
                            api_factory=lambda: _FakeApi("", log))  # type: ignore[arg-type,return-value]
    with session as canary:
        assert canary.email == f"canary+{canary.run_id}@audit.invalid"
        assert len(canary.backup_codes) == 10 and len(canary.channels) == len(PLATFORMS)
        assert canary.recovery is not None and canary.recovery.token == "tok-123456789"
        assert "DELETE /account" not in log
    labels = {label for _, label in known.items()}
    assert {"canary password", "canary e-mail", "canary recovery token", "canary TOTP secret",
            "canary tiktok access token", "canary backup code 10"} <= labels
    assert log[-1] == "DELETE /account" and canary.removed
