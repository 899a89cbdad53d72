"""The HTTP probes against a throwaway nginx edge, a closed port and a mute listener."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from checks.transit import hsts_verdict, http_redirect_verdict, security_headers_verdict
from harness.outcomes import Outcome, ProbeError
from harness.policy import Policy
from harness.probes.http import fetch_samples, probe_plain_http
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
