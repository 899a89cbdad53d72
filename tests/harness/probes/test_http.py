"""The HTTP probes against a throwaway nginx edge, a closed port and a mute listener."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from checks.transit.hsts import hsts_verdict
from checks.transit.http_redirect_only import http_redirect_verdict
from checks.transit.security_headers import security_headers_verdict
from harness.outcomes import Outcome, ProbeError
from harness.policy import Policy
from harness.probes.http import fetch_samples, parse_http_head, probe_plain_http
from harness.profile import Edge

from .conftest import HOST, NginxEdge, make_pki


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
    import socket
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
