"""The HTTP probes against a throwaway nginx edge, a closed port and a mute listener."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from checks.transit.hsts import hsts_verdict
from checks.transit.http_redirect_only import check_http_redirect_only, http_redirect_verdict
from checks.transit.security_headers import security_headers_verdict
from harness.deadline import Deadline
from harness.evidence import EvidenceRecorder
from harness.outcomes import CheckOutcome, Outcome, ProbeError, Verdict
from harness.policy import Policy
from harness.probes import http as http_probe
from harness.probes.http import (
    fetch_samples,
    knock,
    parse_http_head,
    probe_plain_http,
    tls_port_answer,
    visit_plaintext_port,
)
from harness.profile import Edge, TargetProfile
from harness.redaction import KnownSecrets

from .conftest import HOST, NginxEdge, Pki, make_pki


def test_clean_edge_samples_pass_hsts_headers_and_redirects(
        nginx_factory: Callable[..., NginxEdge], fast_policy: Policy) -> None:
    edge = nginx_factory().edge()
    https = fetch_samples(edge, fast_policy, "https")
    assert [s.status for s in https.samples] == [200, 200, 401, 404]
    assert hsts_verdict(https, fast_policy).outcome is Outcome.PASS
    headers = security_headers_verdict(https, fast_policy)
    assert headers.outcome is Outcome.PASS, headers.message
    http = fetch_samples(edge, fast_policy, "http")
    redirect = http_redirect_verdict(http, edge)
    assert redirect.outcome is Outcome.PASS, redirect.message
    assert http.samples[1].header("location") == f"https://{HOST}:{edge.https_port}/healthz"


def test_edge_without_headers_and_with_banner_fails(nginx_factory: Callable[..., NginxEdge],
                                                    fast_policy: Policy) -> None:
    edge = nginx_factory(headers="", server_tokens="on").edge()
    https = fetch_samples(edge, fast_policy, "https")
    assert hsts_verdict(https, fast_policy).outcome is Outcome.FAIL
    verdict = security_headers_verdict(https, fast_policy)
    assert verdict.outcome is Outcome.FAIL
    assert "Server: nginx/" in verdict.message and "no frame protection" in verdict.message


def test_plaintext_port_serving_json_fails(nginx_factory: Callable[..., NginxEdge],
                                           fast_policy: Policy) -> None:
    # Given a plaintext port that answers like the API instead of redirecting
    edge = nginx_factory(http_body="default_type application/json; return 200 '{\"status\":\"ok\"}';").edge()
    # When every sampled path is fetched over plain HTTP
    verdict = http_redirect_verdict(fetch_samples(edge, fast_policy, "http"), edge)
    # Then the check fails naming the URL and what came back
    assert verdict.outcome is Outcome.FAIL
    expected = f"http://{HOST}:{edge.http_port}/healthz answered 200 (application/json, 15 bytes)"
    assert expected in verdict.message


def test_wrong_trust_anchor_is_a_probe_error(nginx_factory: Callable[..., NginxEdge],
                                             fast_policy: Policy, tmp_path: Path) -> None:
    edge = nginx_factory().edge(trust_anchor=make_pki(tmp_path / "stranger").ca_pem)
    with pytest.raises(ProbeError, match="ConnectError"):
        fetch_samples(edge, fast_policy, "https")


@pytest.mark.parametrize("scheme", ["https", "http"])
def test_closed_port_is_a_probe_error(closed_port: int, fast_policy: Policy, scheme: str) -> None:
    edge = Edge(host=HOST, address="127.0.0.1", https_port=closed_port, http_port=closed_port)
    started = time.monotonic()
    with pytest.raises(ProbeError, match="cannot reach"):
        fetch_samples(edge, fast_policy, scheme)  # type: ignore[arg-type]
    assert time.monotonic() - started < fast_policy.timeouts.connect_s


@pytest.mark.parametrize("scheme", ["https", "http"])
def test_mute_listener_is_a_probe_error_within_the_request_timeout(
        silent_listener: int, fast_policy: Policy, scheme: str) -> None:
    edge = Edge(host=HOST, address="127.0.0.1", https_port=silent_listener, http_port=silent_listener)
    started = time.monotonic()
    with pytest.raises(ProbeError, match="no answer within"):
        fetch_samples(edge, fast_policy, scheme)  # type: ignore[arg-type]
    assert time.monotonic() - started < fast_policy.timeouts.request_s + 1


def test_no_http_port_is_a_probe_error(fast_policy: Policy) -> None:
    with pytest.raises(ProbeError, match="no http port"):
        fetch_samples(Edge(host=HOST, address="127.0.0.1", http_port=None), fast_policy, "http")


def test_plain_http_to_a_tls_port_is_seen_as_a_tls_listener(nginx_factory: Callable[..., NginxEdge]) -> None:
    edge = nginx_factory()
    answer = probe_plain_http("127.0.0.1", edge.https_port, HOST, 1.0)
    assert answer.answered_http and answer.status == 400 and answer.speaks_tls is True
    redirect = probe_plain_http("127.0.0.1", edge.http_port, HOST, 1.0)
    assert redirect.status == 301 and redirect.location == f"https://{HOST}:{edge.https_port}/"
    assert redirect.speaks_tls is None  # A redirect to https needs no second look.


def test_plain_http_to_mute_and_closed_ports(silent_listener: int, closed_port: int) -> None:
    started = time.monotonic()
    mute = probe_plain_http("127.0.0.1", silent_listener, HOST, 0.5)
    assert mute.connected and not mute.answered_http and mute.error == "no answer within 0.5s"
    assert time.monotonic() - started < 1.5
    closed = probe_plain_http("127.0.0.1", closed_port, HOST, 0.5)
    assert not closed.connected and closed.error


@pytest.mark.parametrize(("head", "parsed"), [
    (b"HTTP/1.1 301 Moved Permanently\r\nServer: x\r\nLocation: https://votriz.test/\r\n\r\n",
     (301, "https://votriz.test/", "HTTP/1.1 301 Moved Permanently")),
    (b"HTTP/1.0 200 OK\r\nlocation:   /x  \r\n\r\nbody\r\nLocation: no", (200, "/x", "HTTP/1.0 200 OK")),
    (b"HTTP/2 404\r\n\r\n", (404, None, "HTTP/2 404")),
    (b"-NOAUTH Authentication required.\r\n", (None, None, "-NOAUTH Authentication required.")),
    (b"E\x00\x00\x00\x6dSFATAL", (None, None, "E...mSFATAL")),
    (b"", (None, None, "")),
])
def test_parse_http_head(head: bytes, parsed: tuple[int | None, str | None, str]) -> None:
    assert parse_http_head(head) == parsed


@given(st.binary(max_size=300))
def test_parse_http_head_never_crashes(head: bytes) -> None:
    status, _, first = parse_http_head(head)
    assert status is None or 100 <= status <= 999
    assert len(first) <= 120 and first.isprintable()


def test_a_listener_that_speaks_then_waits_is_heard(tmp_path: Path) -> None:
    # Given a listener that answers like Redis (an error line) and keeps the connection open
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def answer() -> None:
        conn, _ = server.accept()
        conn.sendall(b"-NOAUTH Authentication required.\r\n")
        time.sleep(2)
        conn.close()

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    # When it gets a plain HTTP request, then its words are recorded, not a timeout
    result = probe_plain_http("127.0.0.1", server.getsockname()[1], HOST, 0.5)
    assert result.connected and not result.answered_http and result.error is None
    assert result.first_line == "-NOAUTH Authentication required."
    thread.join()
    server.close()


# --- The plaintext port as found: refused, filtered or answering, beside a real HTTPS edge ------


@pytest.fixture
def filtered_port() -> Iterator[int]:
    """A loopback port whose SYNs go unanswered, as behind a firewall's DROP: a listener with a
    backlog of 0 whose one queue place is taken by a connection it never accepts (Linux then
    drops every further SYN)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = int(server.getsockname()[1])
    filler = socket.create_connection(("127.0.0.1", port), timeout=2)
    # The fixture is only worth its name if a connection now goes unanswered.
    with socket.socket() as trial:
        trial.settimeout(0.3)
        with pytest.raises(TimeoutError):
            trial.connect(("127.0.0.1", port))
    yield port
    filler.close()
    server.close()


def run_redirect_check(edge: Edge, policy: Policy, tmp_path: Path) -> Verdict:
    """The check's entry as the plugin calls it, on a profile with only ``edge``."""
    profile = TargetProfile.model_validate({"name": "t", "edge": edge.model_dump()})
    recorder = EvidenceRecorder("transit.http_redirect_only", tmp_path, KnownSecrets())
    try:
        check_http_redirect_only(profile=profile, policy=policy, evidence=recorder)
    except CheckOutcome as ended:  # Every outcome but PASS ends the check by raising.
        return ended.verdict
    assert recorder.verdict is not None, "the check ended without concluding"
    return recorder.verdict


def test_knock_tells_accepted_refused_and_silent_apart(silent_listener: int, closed_port: int,
                                                       filtered_port: int) -> None:
    states = {port: knock("127.0.0.1", port, Deadline(0.5, "timeouts.connect_s"))
              for port in (silent_listener, closed_port, filtered_port)}
    assert states[silent_listener].state == "accepted"
    assert (states[closed_port].state, states[closed_port].detail) == ("refused", "a TCP reset (ECONNREFUSED)")
    assert states[closed_port].icmp_from is None
    silent = states[filtered_port]
    assert silent.state == "silent" and silent.detail == "no answer within the policy's 0.5 s (timeouts.connect_s)"
    assert 0.4 < silent.waited_s < 1.5


def test_tls_port_answer_completes_a_handshake_or_says_why_not(
        nginx_factory: Callable[..., NginxEdge], fast_policy: Policy, silent_listener: int,
        closed_port: int) -> None:
    nginx = nginx_factory()
    # The certificate is not judged here: a stranger's anchor still shows the edge is up.
    up = tls_port_answer(nginx.edge(trust_anchor=None), fast_policy)
    assert up.answered and up.detail.startswith("a TLS handshake completed in ")
    # The plaintext port answers a ClientHello with an HTTP error: up, though not TLS
    plain = tls_port_answer(nginx.edge(https_port=nginx.http_port), fast_policy)
    assert plain.answered and plain.detail.startswith("it answered the TLS handshake with an error: ")
    mute = tls_port_answer(Edge(host=HOST, address="127.0.0.1", https_port=silent_listener), fast_policy)
    assert not mute.answered
    assert mute.detail == (f"the edge 127.0.0.1:{silent_listener} did not answer within the policy's 2 s "
                           "(timeouts.request_s)")
    closed = tls_port_answer(Edge(host=HOST, address="127.0.0.1", https_port=closed_port), fast_policy)
    assert (closed.answered, closed.detail) == (False, "Connection refused")


def test_a_closed_port_80_beside_a_live_edge_passes(
        nginx_factory: Callable[..., NginxEdge], fast_policy: Policy, closed_port: int, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a real TLS edge, and "port 80" (a loopback port where nothing listens) named by the profile
    monkeypatch.setattr(http_probe, "STANDARD_HTTP_PORT", closed_port)
    edge = nginx_factory().edge(http_port=closed_port)
    # When the check runs
    verdict = run_redirect_check(edge, fast_policy, tmp_path)
    # Then the promise holds (nothing serves plain HTTP), and the message says what was seen from here
    assert verdict.outcome is Outcome.PASS, verdict.message
    assert verdict.message.startswith(f"Port {closed_port} of {HOST} refuses connections, as seen from this host: "
                                      "a TCP reset (ECONNREFUSED). Nothing serves plain HTTP there; HTTPS on port "
                                      f"{edge.https_port} answered (a TLS handshake completed in "), verdict.message
    evidence = json.loads((tmp_path / "http-redirects.json").read_text())
    assert evidence["plaintext_port"]["state"] == "refused" and evidence["https_port"]["answered"] is True


def test_a_mistyped_port_is_an_error_while_port_80_serves_content(
        nginx_factory: Callable[..., NginxEdge], fast_policy: Policy, closed_port: int, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Given "port 80" (nginx's plaintext port) serving a 200 page, and a profile that names another
    # port where nothing listens (the reviewer's http_port = 8080)
    nginx = nginx_factory(http_body="default_type text/html; return 200 '<p>plain content</p>';")
    monkeypatch.setattr(http_probe, "STANDARD_HTTP_PORT", nginx.http_port)
    # When the check runs
    verdict = run_redirect_check(nginx.edge(http_port=closed_port), fast_policy, tmp_path)
    # Then the refusal there is no PASS: the profile is to be checked, port 80 was not looked at
    assert verdict.outcome is Outcome.ERROR, verdict.message
    assert verdict.message == (f"The profile names plaintext port {closed_port} (edge.http_port), but nothing "
                               "listens there (a TCP reset (ECONNREFUSED)): check the profile. Port "
                               f"{nginx.http_port}, where browsers send http://, was not looked at, so this is "
                               "no verdict.")


def test_a_filtered_port_80_beside_a_live_edge_is_an_error_naming_the_wait(
        nginx_factory: Callable[..., NginxEdge], fast_policy: Policy, filtered_port: int, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a profile that says the edge serves no plain HTTP, and "port 80" (a loopback port)
    # that drops every SYN
    monkeypatch.setattr(http_probe, "STANDARD_HTTP_PORT", filtered_port)
    edge = nginx_factory().edge(http_port="none")
    # When the check runs
    started = time.monotonic()
    verdict = run_redirect_check(edge, fast_policy, tmp_path)
    # Then it waited the connect timeout once, and nothing observed is no PASS: ERROR naming the wait,
    # the HTTPS answer kept in the evidence
    assert time.monotonic() - started < fast_policy.timeouts.connect_s + 2
    assert verdict.outcome is Outcome.ERROR, verdict.message
    assert verdict.message.startswith(
        f"No answer on port {filtered_port} of {HOST} within the policy's 1 s (timeouts.connect_s): the port "
        "may be filtered on either side (this host's egress, the network path, or the edge), so nothing was "
        f"observed there; HTTPS on port {edge.https_port} answered"), verdict.message
    evidence = json.loads((tmp_path / "http-redirects.json").read_text())
    assert evidence["plaintext_port"]["state"] == "silent" and evidence["https_port"]["answered"] is True


def test_a_filtered_port_80_and_a_closed_https_port_are_an_error(
        fast_policy: Policy, filtered_port: int, closed_port: int, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_probe, "STANDARD_HTTP_PORT", filtered_port)
    edge = Edge(host=HOST, address="127.0.0.1", https_port=closed_port, http_port=filtered_port)
    verdict = run_redirect_check(edge, fast_policy, tmp_path)
    assert verdict.outcome is Outcome.ERROR
    assert verdict.message == (
        f"No answer on port {filtered_port} of {HOST} within the policy's 1 s (timeouts.connect_s); HTTPS "
        f"on port {closed_port} did not answer either (Connection refused): the edge is down or out of reach "
        "from here, so this is no verdict on its plaintext port.")


def _private_netns_refusal() -> str | None:
    """Why the firewall test cannot run here, or None."""
    missing = [tool for tool in ("unshare", "nsenter", "ip", "iptables") if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} not installed"
    tried = subprocess.run(["unshare", "-n", "iptables", "-L", "OUTPUT"], capture_output=True, timeout=20)
    if tried.returncode:
        return f"no private network namespace with iptables here: {tried.stderr.decode(errors='replace')[:200]}"
    return None


def test_firewall_rules_on_either_side_of_a_real_edge(pki: Pki) -> None:
    # Given an edge in its own network namespace behind a veth pair (port 80: a 200 page, 443: TLS),
    # audited from another private namespace: firewall rules on this host's side and on the edge's
    # (netns_port80.py; the host's own netfilter rules are never touched)
    why_not = _private_netns_refusal()
    if why_not:
        pytest.skip(why_not)
    script = Path(__file__).with_name("netns_port80.py")
    ran = subprocess.run(["unshare", "-n", sys.executable, str(script), "auditor", str(pki.cert_pem),
                          str(pki.key_pem), str(os.stat("/proc/self/ns/net").st_ino)],
                         capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr[-2000:]
    seen = {row["scenario"]: row for row in map(json.loads, ran.stdout.splitlines())}
    outcomes = {name: row["outcome"] for name, row in seen.items()}
    # Then only a refusal answered for the edge passes; this host's own REJECT, an ICMP host
    # unreachable and a DROP are errors, and the page served on port 80 fails
    assert outcomes == {
        "no rule": "FAIL",
        "reject here": "ERROR",
        "reject here host-unreachable": "ERROR",
        "drop here": "ERROR",
        "reset here": "PASS",  # a TCP reset made by this host's own rule cannot be told apart (README)
        "reject at the edge": "PASS",
        "reset at the edge": "PASS",
        "mistyped port": "ERROR",
    }, seen
    assert "10.213.0.1, an address of this host (ECONNREFUSED): this host's own firewall" in seen["reject here"][
        "message"]
    assert "No route to host (EHOSTUNREACH)" in seen["reject here host-unreachable"]["message"]
    assert "may be filtered on either side" in seen["drop here"]["message"]
    assert "as seen from this host: a TCP reset (ECONNREFUSED)" in seen["reset here"]["message"]
    assert "an ICMP port unreachable from 10.213.0.2, the edge's address" in seen["reject at the edge"]["message"]
    assert seen["mistyped port"]["message"].startswith("The profile names plaintext port 8080 (edge.http_port), "
                                                       "but nothing listens there")


@pytest.mark.parametrize(("http_body", "outcome", "said"), [
    (None, Outcome.PASS, "Every sampled path on http port"),
    ("default_type application/json; return 200 '{\"status\":\"ok\"}';", Outcome.FAIL,
     "The edge's plaintext port serves more than a redirect to HTTPS"),
])
def test_port_80_answering_although_the_profile_says_none_is_judged_and_said(
        nginx_factory: Callable[..., NginxEdge], fast_policy: Policy, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, http_body: str | None, outcome: Outcome, said: str) -> None:
    # Given a profile that says the edge serves no plain HTTP, and "port 80" (nginx's plaintext port)
    # that answers all the same
    nginx = nginx_factory(http_body=http_body)
    monkeypatch.setattr(http_probe, "STANDARD_HTTP_PORT", nginx.http_port)
    # When the check runs, then port 80 is judged as any plaintext port, and the claim is named
    verdict = run_redirect_check(nginx.edge(http_port="none"), fast_policy, tmp_path)
    assert verdict.outcome is outcome, verdict.message
    assert verdict.message.startswith('The profile says the edge serves no plain HTTP (edge.http_port = "none"), '
                                      f"but port {nginx.http_port} of {HOST} answered. {said}"), verdict.message


def test_a_mute_port_80_where_the_profile_says_none_is_an_error_naming_the_claim(
        silent_listener: int, fast_policy: Policy, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_probe, "STANDARD_HTTP_PORT", silent_listener)
    with pytest.raises(ProbeError) as raised:
        visit_plaintext_port(Edge(host=HOST, address="127.0.0.1", http_port=None), fast_policy)
    assert str(raised.value).startswith(f"port {silent_listener} accepted a connection although the profile "
                                        'says the edge serves no plain HTTP (edge.http_port = "none"); GET ')
    assert "no answer within" in str(raised.value)
