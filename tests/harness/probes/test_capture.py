"""The fakes' capture client on a hand-made capture API (httpx's MockTransport)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from harness.outcomes import ProbeError
from harness.policy import Policy
from harness.probes import capture as capture_module
from harness.probes.capture import CaptureClient
from harness.profile import TargetProfile

PROFILE = TargetProfile.model_validate({
    "name": "t", "backend": "local", "edge": {"host": "votriz.test", "address": "127.0.0.1"},
    "capture": {"url": "https://127.0.0.1:9443/"}})


def client_answering(monkeypatch: pytest.MonkeyPatch, policy: Policy,
                     answer: httpx.Response) -> tuple[CaptureClient, list[str]]:
    seen: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return answer

    real = httpx.Client

    def with_transport(**kwargs: Any) -> httpx.Client:
        kwargs.pop("transport", None)
        return real(transport=httpx.MockTransport(handle), **kwargs)

    monkeypatch.setattr(capture_module.httpx, "Client", with_transport)
    assert PROFILE.capture is not None
    return CaptureClient(PROFILE.capture, PROFILE, policy), seen


def test_mails_to_one_address_oldest_first(monkeypatch: pytest.MonkeyPatch, fast_policy: Policy) -> None:
    mails = [{"seq": 3, "to": "Canary@audit.invalid", "text": "b"}, {"seq": 1, "to": "other@x", "text": "x"},
             {"seq": 2, "to": "canary@audit.invalid", "text": "a"}]
    client, seen = client_answering(monkeypatch, fast_policy, httpx.Response(200, json={"mails": mails}))
    # All mails are fetched, never ?to=ADDR: the address stays out of the fakes' access log.
    assert [m["text"] for m in client.mails_to("canary@AUDIT.invalid")] == ["a", "b"]
    assert seen == ["https://127.0.0.1:9443/_capture/mail"]
    client.reconnect()
    client.close()


def test_an_unexpected_mail_answer_is_a_probe_error(monkeypatch: pytest.MonkeyPatch,
                                                    fast_policy: Policy) -> None:
    client, _ = client_answering(monkeypatch, fast_policy, httpx.Response(200, json={"no": "mails"}))
    with pytest.raises(ProbeError, match=r"_capture/mail: unexpected answer \(KeyError\)"):
        client.mails_to("canary@audit.invalid")
    client.close()
