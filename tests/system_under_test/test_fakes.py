"""The fakes as a real process: HTTPS from the local CA, the plaintext decoy, the capture API."""

from __future__ import annotations

import signal
import ssl
import subprocess
import sys
import time

import httpx
import pytest

from system_under_test.common.pki import build_pki
from system_under_test.local.processes import free_port, tcp_accepts

SECRET = "sk-ant-api03-THIS-VALUE-MUST-NEVER-BE-CAPTURED"


@pytest.fixture(scope="module")
def fakes(tmp_path_factory):
    state_dir = tmp_path_factory.mktemp("fakes-state")
    pki = build_pki(state_dir / "pki")
    port, plaintext_port = free_port(), free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "system_under_test.fakes", "--state-dir", str(state_dir),
         "--port", str(port), "--plaintext-port", str(plaintext_port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while not (tcp_accepts(port) and tcp_accepts(plaintext_port)):
        assert process.poll() is None, "the fakes exited during start"
        assert time.monotonic() < deadline, "the fakes did not start within 20 s"
        time.sleep(0.05)
    tls = httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=ssl.create_default_context(
        cafile=str(pki.ca_cert)), timeout=5)
    plain = httpx.Client(base_url=f"http://127.0.0.1:{plaintext_port}", timeout=5)
    yield tls, plain
    tls.close()
    plain.close()
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=10)


def _captured_since(tls, seq):
    return tls.get("/_capture/requests", params={"since": seq}).json()["requests"]


def _last_seq(tls):
    requests = _captured_since(tls, 0)
    return requests[-1]["seq"] if requests else 0


def test_anthropic_answers_in_messages_shape(fakes):
    tls, _ = fakes

    answer = tls.post("/anthropic/v1/messages", headers={"x-api-key": SECRET},
                      json={"model": "claude-x", "max_tokens": 50,
                            "messages": [{"role": "user", "content": "a caption please"}]})

    assert answer.status_code == 200
    body = answer.json()
    assert body["type"] == "message" and body["role"] == "assistant"
    assert body["content"][0]["type"] == "text" and body["content"][0]["text"]


def test_anthropic_without_key_is_401(fakes):
    tls, _ = fakes
    assert tls.post("/anthropic/v1/messages", json={"messages": []}).status_code == 401


def test_capture_names_headers_but_never_their_values(fakes):
    # Given a request carrying a key, on the TLS listener
    tls, _ = fakes
    before = _last_seq(tls)
    tls.post("/anthropic/v1/messages", headers={"x-api-key": SECRET},
             json={"messages": [{"role": "user", "content": SECRET}]})

    # When the capture is read
    raw = tls.get("/_capture/requests", params={"since": before}).text

    # Then it says a key header was present, but holds neither the key nor the body
    captured = httpx.Response(200, text=raw).json()["requests"]
    assert [r["path"] for r in captured] == ["/anthropic/v1/messages"]
    assert captured[0]["listener"] == "tls"
    assert "x-api-key" in captured[0]["headers_present"]
    assert SECRET not in raw


def test_plaintext_decoy_answers_and_is_recorded_as_plaintext(fakes):
    tls, plain = fakes
    before = _last_seq(tls)

    answer = plain.get("/platforms/tiktok/me", headers={"Authorization": "Bearer tok-1"})

    assert answer.status_code == 200 and answer.json()["platform"] == "tiktok"
    captured = _captured_since(tls, before)
    assert [(r["listener"], r["method"], r["path"]) for r in captured] == [
        ("plaintext", "GET", "/platforms/tiktok/me")]


def test_capture_api_is_not_on_the_plaintext_listener(fakes):
    _, plain = fakes
    assert plain.get("/_capture/requests").status_code == 404


def test_platform_accounts_differ_by_token_and_unknown_platforms_are_404(fakes):
    tls, _ = fakes
    one = tls.get("/platforms/instagram/me", headers={"Authorization": "Bearer a"}).json()
    two = tls.get("/platforms/instagram/me", headers={"Authorization": "Bearer b"}).json()

    assert one["username"] != two["username"]
    assert tls.get("/platforms/myspace/me",
                   headers={"Authorization": "Bearer a"}).status_code == 404


def test_resend_mail_is_captured_per_recipient(fakes):
    tls, _ = fakes

    sent = tls.post("/resend/emails", headers={"Authorization": "Bearer re_test"},
                    json={"from": "no-reply@votriz.test", "to": ["Canary@Example.test"],
                          "subject": "Recover", "text": "https://votriz.test/recover?token=t1"})

    assert sent.status_code == 200 and sent.json()["id"]
    mails = tls.get("/_capture/mail", params={"to": "canary@example.test"}).json()["mails"]
    assert [(m["subject"], m["text"]) for m in mails] == [
        ("Recover", "https://votriz.test/recover?token=t1")]


@pytest.mark.parametrize("path", ["/fal/fal-ai/flux/dev", "/stripe/v1/customers"])
def test_fal_and_stripe_need_a_key(fakes, path):
    tls, _ = fakes
    assert tls.post(path, json={}).status_code == 401
    assert tls.post(path, headers={"Authorization": "Bearer k"}, json={}).status_code == 200
