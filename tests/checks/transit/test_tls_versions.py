"""transit.tls_versions on hand-made scans, then on the reference service."""

from __future__ import annotations

from checks.transit.tls_versions import tls_versions_verdict
from harness.outcomes import Outcome
from harness.probes.tls import TlsVersionProbe

from .conftest import POLICY, TLS13, integration_tests, scan, versions


def test_tls13_only_passes_with_the_full_table() -> None:
    verdict = tls_versions_verdict(scan(), POLICY)
    assert verdict.outcome is Outcome.PASS
    assert "only TLSv1.3" in verdict.message
    table = verdict.details["versions"]
    assert [row["version"] for row in table] == ["SSLv2", "SSLv3", "TLSv1.0", "TLSv1.1", "TLSv1.2", "TLSv1.3"]
    assert [row["accepted"] for row in table] == [False] * 5 + [True]
    assert table[-1]["cipher_suites"] == list(TLS13)


def test_tls12_accepted_fails_naming_the_version_and_suites() -> None:
    verdict = tls_versions_verdict(scan(versions(TLSv1_2=("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",),
                                                 TLSv1_3=TLS13)), POLICY)
    assert verdict.outcome is Outcome.FAIL
    assert "accepts TLSv1.2" in verdict.message
    assert "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" in verdict.message
    assert "allowed: TLSv1.3" in verdict.message


def test_sslv3_accepted_fails() -> None:
    verdict = tls_versions_verdict(scan(versions(SSLv3=("SSL_RSA_WITH_RC4_128_SHA",), TLSv1_3=TLS13)),
                                   POLICY)
    assert verdict.outcome is Outcome.FAIL and "SSLv3" in verdict.message


def test_a_scan_command_in_error_is_error_not_pass() -> None:
    vs = list(versions(TLSv1_3=TLS13))
    vs[1] = TlsVersionProbe("SSLv3", False, None, error="CONNECTIVITY_ISSUE: timed out")
    verdict = tls_versions_verdict(scan(tuple(vs)), POLICY)
    assert verdict.outcome is Outcome.ERROR
    assert "SSLv3: CONNECTIVITY_ISSUE: timed out" in verdict.message


def test_a_version_missing_from_the_scan_is_error() -> None:
    verdict = tls_versions_verdict(scan(versions(TLSv1_3=TLS13)[1:]), POLICY)
    assert verdict.outcome is Outcome.ERROR and "SSLv2: not scanned" in verdict.message


def test_forbidden_version_wins_over_an_untested_one() -> None:
    vs = list(versions(TLSv1_0=("TLS_RSA_WITH_AES_128_CBC_SHA",), TLSv1_3=TLS13))
    vs[0] = TlsVersionProbe("SSLv2", False, None, error="BUG_IN_SSLYZE")
    assert tls_versions_verdict(scan(tuple(vs)), POLICY).outcome is Outcome.FAIL


def test_policy_allowing_tls12_passes_it() -> None:
    policy = POLICY.model_copy(update={"tls": POLICY.tls.model_copy(
        update={"allowed_versions": ("TLSv1.2", "TLSv1.3")})})
    verdict = tls_versions_verdict(scan(versions(TLSv1_2=("X",), TLSv1_3=TLS13)), policy)
    assert verdict.outcome is Outcome.PASS


# --- Against the real reference service -----------------------------------------------------

test_clean_reference_service_passes, test_fault_fails_the_check = integration_tests("transit.tls_versions", {
    "tls12-accepted": "accepts TLSv1.2",
})
