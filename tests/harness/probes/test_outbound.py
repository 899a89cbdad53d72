"""The outbound probe's canary life cycle and step timing, with stand-ins for the API, the wire
capture and the capture API, and the capture client against a closed port."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import pytest

from harness.outcomes import ProbeError
from harness.policy import Policy
from harness.probes import outbound
from harness.probes.api import ApiResponse
from harness.probes.outbound import CaptureClient, CapturedRequest, expected_server_names, observe_outbound
from harness.probes.wire import ApiProcesses, WireCapture, WireWatch
from harness.profile import TargetProfile
from harness.redaction import KnownSecrets

PROFILE = TargetProfile.model_validate({
    "name": "test", "backend": "local",
    "edge": {"host": "votriz.test", "address": "127.0.0.1", "https_port": 8443},
    "api": {}, "capture": {"url": "https://127.0.0.1:9", "plaintext_port": 10},
})


class FakeApi:
    """Records the calls the probe makes; can fail on one of them."""

    calls: ClassVar[list[str]] = []
    fail_on: ClassVar[str | None] = None

    def __init__(self, profile: TargetProfile, *, timeout_s: float) -> None:
        self.token: str | None = None

    def _call(self, name: str, status: int = 201, body: Any = None) -> ApiResponse:
        FakeApi.calls.append(name)
        if FakeApi.fail_on == name:
            raise ProbeError(f"{name}: expected HTTP 201, got 500")
        return ApiResponse(status, body or {}, {})

    def signup(self, email: str, password: str) -> ApiResponse:
        return self._call("signup")

    def login(self, email: str, password: str) -> str:
        self._call("login")
        self.token = "canary-session-token-0123456789"
        return self.token

    def create_brand(self, name: str, industry: str) -> int:
        self._call("create_brand")
        return 7

    def request(self, method: str, path: str) -> ApiResponse:
        return self._call(f"{method} {path}", 200)

    def create_caption(self, brand_id: int, prompt: str) -> ApiResponse:
        return self._call("create_caption")

    def request_recovery(self, email: str) -> ApiResponse:
        return self._call("request_recovery", 202)

    def delete_account(self) -> ApiResponse:
        return self._call("delete_account", 204)

    def close(self) -> None:
        FakeApi.calls.append("close")


API = ApiProcesses("[local] process api (pid 42)", (42,), Path("/proc/42/ns/net"))


@contextmanager
def fake_wire(api: ApiProcesses, seconds: float) -> Iterator[WireWatch]:
    """The wire capture, empty: records that it was running while the API was driven."""
    FakeApi.calls.append("wire starts")
    watch = WireWatch()
    yield watch
    FakeApi.calls.append("wire stops")
    watch.capture = WireCapture(api, 0.0, 1.0, (), 0, 0, 0)


class FakeCapture:
    """The fakes' capture API: two requests since sequence number 40."""

    def __init__(self, capture: Any, profile: TargetProfile, policy: Policy) -> None:
        self.polls = 0

    def last_seq(self) -> int:
        return 40

    def requests_since(self, seq: int) -> tuple[CapturedRequest, ...]:
        return (CapturedRequest(41, "tls", "POST", "/anthropic/v1/messages", "x"),
                CapturedRequest(42, "plaintext", "POST", "/resend/emails", "x"))

    def close(self) -> None:
        pass


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> type[FakeApi]:
    FakeApi.calls = []
    FakeApi.fail_on = None
    monkeypatch.setattr(outbound, "VotrizApi", FakeApi)
    monkeypatch.setattr(outbound, "CaptureClient", FakeCapture)
    monkeypatch.setattr(outbound, "watching_the_wire", fake_wire)
    monkeypatch.setattr(outbound, "SETTLE_S", 0.01)
    return FakeApi


def test_the_api_is_driven_inside_the_capture_and_the_canary_removed_after(
        fakes: type[FakeApi], fast_policy: Policy) -> None:
    secrets = KnownSecrets()
    exercise = observe_outbound(PROFILE, fast_policy, secrets, API)
    # The canary is made and the calls are made while the wire is watched; it is removed after.
    assert fakes.calls == ["wire starts", "signup", "login", "create_brand", "GET /mfa", "create_caption",
                           "GET /mfa", "request_recovery", "wire stops", "delete_account", "close"]
    llm, mail = exercise.steps
    # Before each upstream call, a control call that makes none
    first, second = exercise.controls
    assert (first.action, first.upstream) == ("GET /mfa", "")
    assert first.answered_at <= llm.sent_at <= llm.answered_at <= second.sent_at <= second.answered_at <= mail.sent_at
    assert (llm.upstream, llm.status, mail.upstream, mail.status) == ("LLM (Anthropic)", 201, "Resend", 202)
    assert llm.sent_at <= llm.answered_at <= mail.sent_at <= mail.answered_at < exercise.window_end
    # The fakes' capture is read as a second source; the canary is gone.
    assert [r.path for r in exercise.captured] == ["/anthropic/v1/messages", "/resend/emails"]
    assert exercise.canary_removed and exercise.cleanup_error is None
    # The password and the session token were registered before anything could print them.
    assert {label for _, label in secrets.items()} == {"canary password", "canary session token"}


def test_canary_is_removed_when_the_exercise_fails(fakes: type[FakeApi], fast_policy: Policy) -> None:
    fakes.fail_on = "create_caption"
    with pytest.raises(ProbeError, match="create_caption"):
        observe_outbound(PROFILE, fast_policy, KnownSecrets(), API)
    assert fakes.calls[-2:] == ["delete_account", "close"]


def test_failed_removal_is_recorded_not_hidden(fakes: type[FakeApi], fast_policy: Policy) -> None:
    fakes.fail_on = "delete_account"
    exercise = observe_outbound(PROFILE, fast_policy, KnownSecrets(), API)
    assert not exercise.canary_removed and "delete_account" in (exercise.cleanup_error or "")


def test_without_a_capture_section_the_wire_alone_is_observed(fakes: type[FakeApi],
                                                              fast_policy: Policy) -> None:
    exercise = observe_outbound(PROFILE.model_copy(update={"capture": None}), fast_policy,
                                KnownSecrets(), API)
    assert exercise.captured == () and exercise.capture_error is None and len(exercise.steps) == 2


class MailNotYetCaptured(FakeCapture):
    """The fakes have the LLM call but no mail yet (a mail the service queues)."""

    def requests_since(self, seq: int) -> tuple[CapturedRequest, ...]:
        self.polls += 1
        return (CapturedRequest(41, "tls", "POST", "/anthropic/v1/messages", "x"),)


class CaptureDown(FakeCapture):
    """The capture API answered its first question, then no more."""

    def requests_since(self, seq: int) -> tuple[CapturedRequest, ...]:
        raise ProbeError("GET https://127.0.0.1:9/_capture/requests: ConnectError")


def test_the_settling_ends_once_the_fakes_hold_every_upstream_call(
        fakes: type[FakeApi], fast_policy: Policy, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a 5 s settling time and fakes that already hold the LLM call and the mail
    monkeypatch.setattr(outbound, "SETTLE_S", 5.0)
    monkeypatch.setattr(outbound, "CAPTURED_MARGIN_S", 0.2)
    started = time.monotonic()
    # When the API is driven
    exercise = observe_outbound(PROFILE, fast_policy, KnownSecrets(), API)
    # Then the window closed the margin after the last answer, not 5 s after it
    assert time.monotonic() - started < 2.0
    assert 0.15 < exercise.window_end - exercise.steps[-1].answered_at <= 0.25
    assert fakes.calls.index("wire stops") > fakes.calls.index("request_recovery")


@pytest.mark.parametrize("capture", [MailNotYetCaptured, CaptureDown])
def test_the_full_settling_time_without_every_call_at_the_fakes(
        fakes: type[FakeApi], fast_policy: Policy, monkeypatch: pytest.MonkeyPatch,
        capture: type[FakeCapture]) -> None:
    # Given fakes that hold no mail (or cannot be asked) and a settling time of 0.6 s
    monkeypatch.setattr(outbound, "SETTLE_S", 0.6)
    monkeypatch.setattr(outbound, "CaptureClient", capture)
    monkeypatch.setattr(outbound.CaptureClient, "last_seq", lambda self: 40)
    # When the API is driven
    exercise = observe_outbound(PROFILE, fast_policy, KnownSecrets(), API)
    # Then the capture went on for the whole settling time after the last answer
    assert exercise.window_end == pytest.approx(exercise.steps[-1].answered_at + 0.6)
    assert time.monotonic() >= exercise.window_end


@pytest.mark.parametrize(("capture", "names"), [
    (None, None),
    ({"url": "https://127.0.0.1:9"}, None),  # an IP address: a client sends no server name
    ({"url": "https://Fakes.Test:9"}, frozenset({"fakes.test"})),
    ({"url": "https://10.0.0.5:8443", "server_name": "fakes.votriz.test"}, frozenset({"fakes.votriz.test"})),
])
def test_expected_server_names_come_from_the_capture_section(capture: Any, names: Any) -> None:
    profile = PROFILE.model_copy(update={"capture": None}) if capture is None else \
        TargetProfile.model_validate({**PROFILE.model_dump(mode="json"), "capture": capture})
    assert expected_server_names(profile) == names


def test_capture_api_on_a_closed_port_is_a_probe_error_at_once(closed_port: int,
                                                               fast_policy: Policy) -> None:
    assert PROFILE.capture is not None
    capture = PROFILE.capture.model_copy(update={"url": f"https://127.0.0.1:{closed_port}"})
    client = CaptureClient(capture, PROFILE, fast_policy)
    started = time.monotonic()
    with pytest.raises(ProbeError, match="_capture/requests"):
        client.last_seq()
    assert time.monotonic() - started < fast_policy.timeouts.connect_s
    client.close()


def test_the_stores_the_profile_names_by_address_and_name() -> None:
    from harness.probes.outbound import store_names

    profile = TargetProfile.model_validate({
        "name": "t", "backend": "remote", "edge": {"host": "votriz.test"},
        "database": {"dsn": "host=db.internal port=6432 dbname=votriz user=auditor"},
        "redis": {"host": "Cache.internal", "port": 6380}})
    assert store_names(profile) == {"db.internal:6432", "db.internal", "Cache.internal:6380", "cache.internal"}
    # A database reached over a Unix socket has no peer on the wire
    socket_only = profile.model_copy(update={"database": profile.database.model_copy(
        update={"dsn": "host=/run/postgresql dbname=votriz user=auditor"}), "redis": None})
    assert store_names(socket_only) == frozenset()
