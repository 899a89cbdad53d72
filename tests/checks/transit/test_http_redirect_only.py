"""transit.http_redirect_only on hand-made plain-HTTP samples, then on the reference service."""

from __future__ import annotations

from pathlib import Path

import pytest

from checks.transit.http_redirect_only import (
    check_http_redirect_only,
    http_redirect_verdict,
    plaintext_port_verdict,
)
from harness.outcomes import Outcome
from harness.probes import http as http_probe
from harness.probes.http import EdgeSamples, HttpSample, PlaintextPortVisit, PortKnock, TlsPortAnswer
from harness.profile import Edge
from system_under_test.local.processes import free_port

from .conftest import EDGE, PATHS, conclude, integration_tests, profile


def plain(path: str, status: int = 301, location: str | None = "auto", content_type: str = "text/html",
          body_bytes: int = 162) -> HttpSample:
    if location == "auto":
        location = f"https://votriz.test:8443{path}"
    headers = (("location", location),) if location else ()
    return HttpSample("http", path, f"http://votriz.test:8080{path}", status, headers, body_bytes,
                      content_type)


def http(*samples: HttpSample) -> EdgeSamples:
    return EdgeSamples("http", "votriz.test", 8080, samples)


def test_permanent_redirects_to_the_same_https_url_pass() -> None:
    verdict = http_redirect_verdict(http(*(plain(p) for p, _ in PATHS), plain("/x?a=1", 308)), EDGE)
    assert verdict.outcome is Outcome.PASS and "301/308 redirect" in verdict.message


def test_serving_json_over_http_fails_naming_the_url() -> None:
    verdict = http_redirect_verdict(http(plain("/"), plain("/healthz", 200, None, "application/json", 15)),
                                    EDGE)
    assert verdict.outcome is Outcome.FAIL
    assert "http://votriz.test:8080/healthz answered 200 (application/json, 15 bytes)" in verdict.message
    assert "https://votriz.test:8443/healthz" in verdict.message


@pytest.mark.parametrize(("sample", "fragment"), [
    (plain("/", 302), "answered 302"),
    (plain("/", location="http://votriz.test:8443/"), "redirects to http://votriz.test:8443/"),
    (plain("/", location="https://evil.test:8443/"), "not to https://votriz.test:8443/"),
    (plain("/", location="https://votriz.test:8443/elsewhere"), "not to"),
    (plain("/", location="https://votriz.test/"), "not to"),  # port 443, not the edge's 8443
    (plain("/", location=None), "without a Location header"),
    (plain("/", body_bytes=4096), "tiny stock page"),
    (plain("/", content_type="application/json", body_bytes=20), "tiny stock page"),
])
def test_redirect_problems_fail(sample: HttpSample, fragment: str) -> None:
    verdict = http_redirect_verdict(http(sample), EDGE)
    assert verdict.outcome is Outcome.FAIL and fragment in verdict.message


def test_default_port_redirect_without_explicit_port_passes() -> None:
    edge = EDGE.model_copy(update={"https_port": 443})
    verdict = http_redirect_verdict(http(plain("/", location="https://votriz.test/")), edge)
    assert verdict.outcome is Outcome.PASS


# --- The plaintext port as found: refused, filtered, answered; the edge up or down ----------

WAIT = "the policy's 5 s (timeouts.connect_s)"
NONE_EDGE = EDGE.model_copy(update={"http_port": None})
HTTPS_UP = TlsPortAnswer("127.0.0.1", 8443, True, "a TLS handshake completed in 0.02 s")


def knocked(state: str, detail: str = "", port: int = 8080) -> PortKnock:
    return PortKnock("127.0.0.1", port, state, detail, 0.01, WAIT)  # type: ignore[arg-type]


RESET = "a TCP reset (ECONNREFUSED)"
REFUSED = knocked("refused", RESET, port=80)
SILENT = knocked("silent", f"no answer within {WAIT}", port=80)


ICMP = PortKnock("127.0.0.1", 80, "refused", "an ICMP port unreachable from 127.0.0.1, the edge's address "
                 "(ECONNREFUSED)", 0.01, WAIT, icmp_from="127.0.0.1")


@pytest.mark.parametrize(("refusal", "edge", "seen", "said"), [
    (REFUSED, EDGE, "a TCP reset (ECONNREFUSED)", ""),
    (ICMP, NONE_EDGE, "an ICMP port unreachable from 127.0.0.1, the edge's address (ECONNREFUSED)",
     ', as the profile says (edge.http_port = "none")'),
])
def test_a_refusing_port_80_passes_when_https_answers_saying_what_was_seen(
        refusal: PortKnock, edge: Edge, seen: str, said: str) -> None:
    verdict = plaintext_port_verdict(PlaintextPortVisit(80, edge.http_port is None, refusal, https=HTTPS_UP), edge)
    assert verdict.outcome is Outcome.PASS
    assert verdict.message == (
        f"Port 80 of votriz.test refuses connections, as seen from this host: {seen}. Nothing serves plain "
        f"HTTP there{said}; HTTPS on port 8443 answered (a TLS handshake completed in 0.02 s), so the edge "
        "was up.")
    assert verdict.details["samples"] == [] and verdict.details["plaintext_port"]["state"] == "refused"
    assert verdict.details["https_port"]["answered"] is True
    assert verdict.details["plaintext_port"]["icmp_from"] == refusal.icmp_from


def test_a_silent_port_80_is_an_error_even_when_https_answers() -> None:
    # Given port 80 that does not answer (a DROP on this host's egress, on the path or at the edge)
    # while the edge's HTTPS port answers
    verdict = plaintext_port_verdict(PlaintextPortVisit(80, True, SILENT, https=HTTPS_UP), NONE_EDGE)
    # Then nothing was observed: ERROR, never PASS, saying where the filter may be and how to waive
    assert verdict.outcome is Outcome.ERROR
    assert verdict.message == (
        "No answer on port 80 of votriz.test within the policy's 5 s (timeouts.connect_s): the port may be "
        "filtered on either side (this host's egress, the network path, or the edge), so nothing was observed "
        "there; HTTPS on port 8443 answered (a TLS handshake completed in 0.02 s), so the edge was up. Someone "
        "who knows the edge's firewall can waive this check (README, Waivers).")
    assert verdict.details["plaintext_port"]["state"] == "silent" and verdict.details["https_port"]["answered"]


@pytest.mark.parametrize("detail", [
    "No route to host (EHOSTUNREACH): an ICMP rejection from a router or firewall on the way, or this host's "
    "own routing, not a refusal by the edge",
    "Operation not permitted (EPERM): this host refused to send it (its own firewall, routing or security "
    "policy), not a refusal by the edge",
    "an ICMP port unreachable from 10.0.0.1, an address of this host (ECONNREFUSED): this host's own firewall "
    "refused the connection, not the edge",
])
def test_a_refusal_that_is_not_the_edges_is_an_error_naming_it(detail: str) -> None:
    visit = PlaintextPortVisit(80, False, knocked("failed", detail, 80), https=HTTPS_UP)
    verdict = plaintext_port_verdict(visit, EDGE)
    assert verdict.outcome is Outcome.ERROR
    assert verdict.message == (f"Cannot reach 127.0.0.1:80: {detail}; nothing was observed of the edge's "
                               "plaintext port.")


@pytest.mark.parametrize(("plain", "says"), [
    (knocked("refused", RESET), f"nothing listens there ({RESET})"),
    (knocked("silent", f"no answer within {WAIT}"), f"nothing answers there (no answer within {WAIT})"),
])
def test_a_configured_port_other_than_80_turning_connections_away_is_an_error(plain: PortKnock,
                                                                              says: str) -> None:
    # Given a profile that names port 8080 (a typo, or a port that was closed) where nothing listens,
    # while the edge's HTTPS port answers
    verdict = plaintext_port_verdict(PlaintextPortVisit(8080, False, plain, https=HTTPS_UP), EDGE)
    # Then that says nothing of port 80, where browsers go: ERROR, the profile is to be checked
    assert verdict.outcome is Outcome.ERROR
    assert verdict.message == (f"The profile names plaintext port 8080 (edge.http_port), but {says}: check "
                               "the profile. Port 80, where browsers send http://, was not looked at, so this "
                               "is no verdict.")


@pytest.mark.parametrize("plain", [REFUSED, SILENT])
@pytest.mark.parametrize("https", [
    TlsPortAnswer("127.0.0.1", 8443, False, "Connection refused"),
    TlsPortAnswer("127.0.0.1", 8443, False, f"no answer within {WAIT}"),
])
def test_both_ports_silent_is_an_error_not_a_verdict(plain: PortKnock, https: TlsPortAnswer) -> None:
    verdict = plaintext_port_verdict(PlaintextPortVisit(80, False, plain, https=https), EDGE)
    assert verdict.outcome is Outcome.ERROR
    assert f"; HTTPS on port 8443 did not answer either ({https.detail}): the edge is down" in verdict.message
    assert verdict.message.startswith(("Port 80 of votriz.test refuses", "No answer on port 80"))


def test_a_name_that_does_not_resolve_is_an_error() -> None:
    visit = PlaintextPortVisit(80, True, knocked("failed", "Name or service not known", 80))
    verdict = plaintext_port_verdict(visit, NONE_EDGE)
    assert verdict.outcome is Outcome.ERROR
    assert verdict.message.startswith("Cannot reach 127.0.0.1:80: Name or service not known;")


def test_an_answering_port_is_judged_as_before_with_the_knock_in_the_evidence() -> None:
    visit = PlaintextPortVisit(8080, False, knocked("accepted"), samples=http(plain("/"), plain("/healthz")))
    verdict = plaintext_port_verdict(visit, EDGE)
    assert verdict.outcome is Outcome.PASS
    assert verdict.message == http_redirect_verdict(visit.samples, EDGE).message  # type: ignore[arg-type]
    assert len(verdict.details["samples"]) == 2 and verdict.details["plaintext_port"]["state"] == "accepted"


@pytest.mark.parametrize(("sample", "outcome"), [
    (plain("/", location="https://votriz.test:8443/"), Outcome.PASS),
    (plain("/", 200, None, "application/json", 15), Outcome.FAIL),
])
def test_port_80_answering_where_the_profile_says_none_says_so(sample: HttpSample, outcome: Outcome) -> None:
    # Given a profile that says the edge serves no plain HTTP, and port 80 that answers all the same
    samples = EdgeSamples("http", "votriz.test", 80, (sample,))
    verdict = plaintext_port_verdict(PlaintextPortVisit(80, True, knocked("accepted", port=80),
                                                        samples=samples), NONE_EDGE)
    # Then it is judged as any plaintext port is, and the message names the profile's claim
    assert verdict.outcome is outcome
    assert verdict.message.startswith('The profile says the edge serves no plain HTTP (edge.http_port = "none"), '
                                      "but port 80 of votriz.test answered. ")
    assert verdict.details["profile_says_none"] is True


def test_the_check_looks_at_port_80_when_the_profile_says_none(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a profile that says the edge serves no plain HTTP, on a host where nothing listens on the
    # standard plaintext port (a free loopback port stands for 80) nor on the HTTPS port
    standard = free_port()
    monkeypatch.setattr(http_probe, "STANDARD_HTTP_PORT", standard)
    edge = {"host": "votriz.test", "address": "127.0.0.1", "http_port": "none", "https_port": free_port()}
    # When the check runs
    verdict = conclude(check_http_redirect_only, tmp_path, profile=profile(edge=edge))
    # Then it looked at that port itself (neither MANUAL nor trusting the profile), and with HTTPS
    # silent too the edge is down: ERROR, no verdict on the promise
    assert verdict.outcome is Outcome.ERROR, verdict.message
    assert verdict.message.startswith(f"Port {standard} of votriz.test refuses connections, as seen from this "
                                      "host: a TCP reset (ECONNREFUSED); HTTPS on port"), verdict.message
    assert verdict.details["plaintext_port"]["port"] == standard and verdict.details["profile_says_none"]


# --- Against the real reference service -----------------------------------------------------

test_clean_reference_service_passes, test_fault_fails_the_check = integration_tests("transit.http_redirect_only", {
    "http-serves-content": "instead of a 301/308 redirect",
})
