"""The TLS probe against real local servers: a throwaway nginx edge, a closed port, a mute listener."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from checks.transit.certificate import certificate_verdict
from checks.transit.tls_versions import tls_versions_verdict
from harness.outcomes import Outcome, ProbeError
from harness.policy import Policy
from harness.probes.tls import scan_tls
from harness.profile import Edge

from .conftest import HOST, NginxEdge, make_pki


def test_tls13_only_edge_passes_versions_and_certificate(
        nginx_factory: Callable[..., NginxEdge], fast_policy: Policy) -> None:
    # Given an edge that speaks TLS 1.3 only, with a certificate from our CA
    edge = nginx_factory().edge()
    # When one scan runs
    scan = scan_tls(edge, fast_policy)
    # Then every version was tried, only TLS 1.3 accepted, and the certificate validates
    assert [v.version for v in scan.versions] == ["SSLv2", "SSLv3", "TLSv1.0", "TLSv1.1", "TLSv1.2",
                                                  "TLSv1.3"]
    assert all(v.completed for v in scan.versions)
    assert tls_versions_verdict(scan, fast_policy).outcome is Outcome.PASS
    cert = certificate_verdict(scan, fast_policy)
    assert cert.outcome is Outcome.PASS, cert.message
    assert scan.certificate is not None and scan.certificate.anchor_store == "Supplied CA file"
    assert scan.hsts is not None and scan.hsts.max_age == 63072000 and scan.hsts.include_subdomains


def test_edge_accepting_tls12_fails(nginx_factory: Callable[..., NginxEdge], fast_policy: Policy) -> None:
    edge = nginx_factory(protocols="TLSv1.2 TLSv1.3").edge()
    verdict = tls_versions_verdict(scan_tls(edge, fast_policy), fast_policy)
    assert verdict.outcome is Outcome.FAIL
    assert "accepts TLSv1.2" in verdict.message


def test_certificate_expiring_in_two_days_fails(nginx_factory: Callable[..., NginxEdge],
                                                fast_policy: Policy, tmp_path: Path) -> None:
    edge = nginx_factory(cert=make_pki(tmp_path / "short", days=2)).edge()
    verdict = certificate_verdict(scan_tls(edge, fast_policy), fast_policy)
    assert verdict.outcome is Outcome.FAIL
    assert "expires in 2.0 days" in verdict.message or "expires in 1.9 days" in verdict.message


def test_certificate_from_another_ca_fails_against_the_anchor(
        nginx_factory: Callable[..., NginxEdge], fast_policy: Policy, tmp_path: Path) -> None:
    stranger = make_pki(tmp_path / "stranger")
    edge = nginx_factory().edge(trust_anchor=stranger.ca_pem)
    verdict = certificate_verdict(scan_tls(edge, fast_policy), fast_policy)
    assert verdict.outcome is Outcome.FAIL
    assert "does not validate against the profile's trust anchor" in verdict.message


def test_certificate_for_another_host_fails(nginx_factory: Callable[..., NginxEdge],
                                            fast_policy: Policy, tmp_path: Path) -> None:
    edge = nginx_factory(cert=make_pki(tmp_path / "other", host="other.test")).edge()
    verdict = certificate_verdict(scan_tls(edge, fast_policy), fast_policy)
    assert verdict.outcome is Outcome.FAIL and f"does not name {HOST}" in verdict.message


def test_closed_port_is_a_probe_error_at_once(closed_port: int, fast_policy: Policy) -> None:
    started = time.monotonic()
    with pytest.raises(ProbeError, match="cannot connect"):
        scan_tls(Edge(host=HOST, address="127.0.0.1", https_port=closed_port), fast_policy)
    assert time.monotonic() - started < 2 * fast_policy.timeouts.connect_s


def test_listener_that_never_speaks_tls_is_a_probe_error_within_the_timeout(
        silent_listener: int, fast_policy: Policy) -> None:
    started = time.monotonic()
    with pytest.raises(ProbeError, match="does not speak TLS"):
        scan_tls(Edge(host=HOST, address="127.0.0.1", https_port=silent_listener), fast_policy)
    assert time.monotonic() - started < 2 * fast_policy.timeouts.connect_s + 0.5


def test_edge_without_address_is_resolved_once_preferring_ipv4(closed_port: int,
                                                               fast_policy: Policy) -> None:
    with pytest.raises(ProbeError, match=f"at 127.0.0.1:{closed_port}: cannot connect"):
        scan_tls(Edge(host="localhost", https_port=closed_port), fast_policy)


def test_without_trust_anchor_the_private_ca_fails_the_public_store(
        nginx_factory: Callable[..., NginxEdge], fast_policy: Policy) -> None:
    edge = nginx_factory().edge(trust_anchor=None)
    verdict = certificate_verdict(scan_tls(edge, fast_policy), fast_policy)
    assert verdict.outcome is Outcome.FAIL
    assert "does not validate against the Mozilla trust store" in verdict.message


def test_the_trust_anchor_is_read_once_and_a_file_swapped_after_is_not_judged(
        nginx_factory: Callable[..., NginxEdge], fast_policy: Policy, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.probes.tls as tls_probe

    # Given an edge whose certificate chains to the profile's anchor, and an anchor file that is
    # replaced by a stranger's CA right after the scan started (after its preflight)
    nginx = nginx_factory()
    anchor = tmp_path / "anchor.pem"
    anchor.write_bytes(nginx.pki.ca_pem.read_bytes())
    stranger = make_pki(tmp_path / "stranger").ca_pem.read_bytes()
    real_preflight = tls_probe.preflight_tls

    def preflight_then_swap(*args: object, **kwargs: object) -> None:
        real_preflight(*args, **kwargs)  # type: ignore[arg-type]
        anchor.write_bytes(stranger)

    monkeypatch.setattr(tls_probe, "preflight_tls", preflight_then_swap)
    # When the edge is scanned
    scan = scan_tls(nginx.edge(trust_anchor=anchor), fast_policy)
    # Then sslyze and the client-like validation judged the anchor as read, not the swapped file
    assert anchor.read_bytes() == stranger
    verdict = certificate_verdict(scan, fast_policy)
    assert verdict.outcome is Outcome.PASS, verdict.message
    assert scan.certificate is not None and scan.certificate.anchor_store == "Supplied CA file"


@pytest.mark.timeout(30)
def test_a_fifo_trust_anchor_is_refused_at_once(nginx_factory: Callable[..., NginxEdge], fast_policy: Policy,
                                                tmp_path: Path) -> None:
    import os

    from harness.probes.tls import edge_tls_context

    fifo = tmp_path / "anchor.fifo"
    os.mkfifo(fifo)
    edge = nginx_factory().edge(trust_anchor=fifo)
    expected = (f"cannot load trust anchor: {fifo}: the trust anchor was not read: it is a FIFO, "
                "not a regular file")
    started = time.monotonic()
    with pytest.raises(ProbeError) as scanned:
        scan_tls(edge, fast_policy)
    with pytest.raises(ProbeError) as context:
        edge_tls_context(edge)
    assert str(scanned.value) == expected and str(context.value) == expected
    assert time.monotonic() - started < 2
