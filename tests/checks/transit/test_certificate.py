"""transit.certificate on hand-made certificates, then on the reference service."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509

from checks.transit.certificate import certificate_verdict, host_matches_certificate
from harness.certificate_lint import LintFinding
from harness.outcomes import Outcome
from harness.probes.tls import ChainCertificate, ClientValidation, observe_certificate

from .certificate_edges import VARIANTS, write_edge_pki
from .conftest import NOW, POLICY, cert, integration_tests, scan


def test_good_certificate_passes() -> None:
    verdict = certificate_verdict(scan(certificate=cert()), POLICY, now=NOW)
    assert verdict.outcome is Outcome.PASS
    assert "80 days left" in verdict.message and "EC secp256r1" in verdict.message
    assert verdict.details["trust_store_judged"] == "Supplied CA file"
    assert verdict.details["built_in_stores_not_judged"] == {"Mozilla": False}


def test_certificate_expiring_in_two_days_fails_at_injected_now() -> None:
    observation = scan(certificate=cert(not_before=NOW - timedelta(days=60),
                                        not_after=NOW + timedelta(days=2)))
    verdict = certificate_verdict(observation, POLICY, now=NOW)
    assert verdict.outcome is Outcome.FAIL
    assert "expires in 2.0 days" in verdict.message and "at least 14 days" in verdict.message
    # Judged three weeks earlier, the same certificate had enough days left.
    assert certificate_verdict(observation, POLICY, now=NOW - timedelta(days=21)).outcome is Outcome.PASS


def test_expired_certificate_fails() -> None:
    verdict = certificate_verdict(scan(certificate=cert(not_after=NOW - timedelta(days=1))), POLICY, now=NOW)
    assert verdict.outcome is Outcome.FAIL and "expired 1.0 days ago" in verdict.message


def test_certificate_not_chaining_to_the_anchor_fails_with_the_reason() -> None:
    verdict = certificate_verdict(scan(certificate=cert(chains_to_anchor=False,
                                                        validation_error="unable to get local issuer")),
                                  POLICY, now=NOW)
    assert verdict.outcome is Outcome.FAIL
    assert ("does not validate against the profile's trust anchor (unable to get local issuer)"
            in verdict.message)


def test_certificate_for_another_host_fails() -> None:
    verdict = certificate_verdict(scan(certificate=cert(dns_names=("other.test",), ip_addresses=())),
                                  POLICY, now=NOW)
    assert verdict.outcome is Outcome.FAIL and "does not name votriz.test" in verdict.message


@pytest.mark.parametrize(("key_type", "bits", "curve", "outcome"), [
    ("RSA", 1024, None, Outcome.FAIL), ("RSA", 2048, None, Outcome.PASS),
    ("EC", 224, "secp224r1", Outcome.FAIL), ("EC", 384, "secp384r1", Outcome.PASS),
    ("Ed25519", 256, None, Outcome.PASS), ("DSA", 2048, None, Outcome.FAIL),
])
def test_key_strength_per_policy(key_type: str, bits: int, curve: str | None, outcome: Outcome) -> None:
    verdict = certificate_verdict(scan(certificate=cert(key_type=key_type, key_bits=bits, curve=curve)),
                                  POLICY, now=NOW)
    assert verdict.outcome is outcome, verdict.message


def test_no_certificate_observed_is_error() -> None:
    verdict = certificate_verdict(scan(certificate_error="CONNECTIVITY_ISSUE: reset"), POLICY, now=NOW)
    assert verdict.outcome is Outcome.ERROR and "CONNECTIVITY_ISSUE" in verdict.message


def test_no_result_for_the_judged_store_is_error() -> None:
    verdict = certificate_verdict(scan(certificate=cert(anchor_store=None, chains_to_anchor=None)),
                                  POLICY, now=NOW)
    assert verdict.outcome is Outcome.ERROR and "no validation result" in verdict.message


def test_without_an_anchor_the_public_store_is_judged_and_said() -> None:
    public = cert(anchor_store="Mozilla", other_stores=(("Supplied CA file", True),))
    verdict = certificate_verdict(scan(certificate=public), POLICY, now=NOW)
    assert verdict.outcome is Outcome.PASS and "Mozilla trust store" in verdict.message
    refused = dataclasses.replace(public, chains_to_anchor=False, validation_error="self-signed")
    verdict = certificate_verdict(scan(certificate=refused), POLICY, now=NOW)
    assert verdict.outcome is Outcome.FAIL
    assert "does not validate against the Mozilla trust store (self-signed)" in verdict.message


NO_AKI = LintFinding("leaf (CN=votriz.test)", "leaf-no-authority-key-identifier",
                     "the certificate has no Authority Key Identifier extension (RFC 5280 §4.2.1.1 "
                     "requires it in CA-issued certificates; clients accept it)")
NO_CA_SKI = LintFinding("issuer 1 (CN=Test CA)", "ca-no-subject-key-identifier",
                        "the CA certificate has no Subject Key Identifier extension")


def test_lint_findings_and_the_strict_verifier_never_fail_a_certificate_clients_accept() -> None:
    # Given a certificate a client accepts, but that a strict verifier refuses and lint finds lacking,
    observation = cert(lint_findings=(NO_AKI, NO_CA_SKI), strict_verifier_accepts=False,
                       validated_by="OpenSSL 3.0.17")
    # when it is judged,
    verdict = certificate_verdict(scan(certificate=observation), POLICY, now=NOW)
    # then it passes, says in plain words what it recorded, and keeps every finding in the evidence.
    assert verdict.outcome is Outcome.PASS, verdict.message
    assert ("Recorded, not judged (clients accept it): the certificate has no Authority Key Identifier "
            "extension" in verdict.message)
    assert "and 1 more (see the evidence)" in verdict.message
    assert "2.5.29" not in verdict.message and "OID" not in verdict.message
    assert [f["rule"] for f in verdict.details["lint_findings_not_judged"]] == [
        "leaf-no-authority-key-identifier", "ca-no-subject-key-identifier"]
    assert verdict.details["strict_verifier_accepts"] is False
    assert verdict.details["validated_by"] == "OpenSSL 3.0.17"


def test_lint_findings_do_not_hide_a_real_problem() -> None:
    observation = cert(lint_findings=(NO_AKI,), dns_names=("other.test",), ip_addresses=())
    verdict = certificate_verdict(scan(certificate=observation), POLICY, now=NOW)
    assert verdict.outcome is Outcome.FAIL and "does not name votriz.test" in verdict.message
    assert "Authority Key Identifier" not in verdict.message
    assert verdict.details["lint_findings_not_judged"][0]["rule"] == "leaf-no-authority-key-identifier"


def test_a_clean_pass_mentions_no_findings() -> None:
    verdict = certificate_verdict(scan(certificate=cert()), POLICY, now=NOW)
    assert "Recorded" not in verdict.message and verdict.details["lint_findings_not_judged"] == []


def test_an_expired_issuer_fails_even_when_the_leaf_is_fine() -> None:
    expired_ca = ChainCertificate("CN=Test CA", NOW - timedelta(days=3650), NOW - timedelta(days=2))
    verdict = certificate_verdict(scan(certificate=cert(issuers=(expired_ca,))), POLICY, now=NOW)
    assert verdict.outcome is Outcome.FAIL
    assert "its issuer CN=Test CA expired on 2026-11-29" in verdict.message
    assert verdict.details["issuers"][0]["subject"] == "CN=Test CA"
    # Judged a week earlier, the same chain was valid.
    earlier = certificate_verdict(scan(certificate=cert(issuers=(expired_ca,))), POLICY,
                                  now=NOW - timedelta(days=7))
    assert earlier.outcome is Outcome.PASS, earlier.message


def test_an_issuer_not_yet_valid_fails() -> None:
    future_ca = ChainCertificate("CN=Test CA", NOW + timedelta(days=1), NOW + timedelta(days=3650))
    verdict = certificate_verdict(scan(certificate=cert(issuers=(future_ca,))), POLICY, now=NOW)
    assert verdict.outcome is Outcome.FAIL and "its issuer CN=Test CA is not valid before" in verdict.message


# --- The observation the probe builds from real certificates ---------------------------------

def _edge_chain(tmp_path: Path, variant: str) -> tuple[x509.Certificate, x509.Certificate]:
    ca_pem, cert_pem, _ = write_edge_pki(tmp_path / variant, {v.name: v for v in VARIANTS}[variant])
    return (x509.load_pem_x509_certificate(cert_pem.read_bytes()),
            x509.load_pem_x509_certificate(ca_pem.read_bytes()))


def test_a_leaf_without_aki_that_openssl_accepts_is_observed_as_chaining_with_a_finding(tmp_path: Path) -> None:
    # Given a leaf without an Authority Key Identifier that OpenSSL chained to its CA,
    leaf, ca = _edge_chain(tmp_path, "no-aki")
    client = ClientValidation(True, None, (leaf, ca), "OpenSSL 3.0.17")
    # when the probe reduces it (the strict verifier's result absent here),
    observation = observe_certificate([leaf], sni_host="votriz.test", path_results=[], client=client)
    # then it chains, the finding is recorded, and the check passes at a time inside its window.
    assert observation.chains_to_anchor is True and observation.strict_verifier_accepts is None
    assert [f.rule for f in observation.lint_findings] == ["leaf-no-authority-key-identifier"]
    assert [i.subject for i in observation.issuers] == [ca.subject.rfc4514_string()]
    verdict = certificate_verdict(scan(certificate=observation), POLICY,
                                  now=leaf.not_valid_before_utc + timedelta(days=1))
    assert verdict.outcome is Outcome.PASS, verdict.message


def test_a_validation_answered_by_another_certificate_is_no_result(tmp_path: Path) -> None:
    leaf, _ = _edge_chain(tmp_path, "everything")
    other, other_ca = _edge_chain(tmp_path, "no-ski")
    client = ClientValidation(True, None, (other, other_ca), "OpenSSL 3.0.17")
    observation = observe_certificate([leaf], sni_host="votriz.test", path_results=[], client=client)
    assert observation.chains_to_anchor is None and observation.lint_findings == ()
    assert "answered with another certificate" in (observation.validation_error or "")
    verdict = certificate_verdict(scan(certificate=observation), POLICY, now=NOW)
    assert verdict.outcome is Outcome.ERROR


@pytest.mark.parametrize(("host", "names", "ips", "expected"), [
    ("votriz.test", ("votriz.test",), (), True),
    ("VOTRIZ.test", ("votriz.TEST.",), (), True),
    ("a.votriz.test", ("*.votriz.test",), (), True),
    ("votriz.test", ("*.votriz.test",), (), False),
    ("a.b.votriz.test", ("*.votriz.test",), (), False),
    ("127.0.0.1", ("127.0.0.1",), (), False),
    ("127.0.0.1", (), ("127.0.0.1",), True),
])
def test_host_matching(host: str, names: tuple[str, ...], ips: tuple[str, ...], expected: bool) -> None:
    assert host_matches_certificate(host, names, ips) is expected


# --- Against the real reference service -----------------------------------------------------

test_clean_reference_service_passes, test_fault_fails_the_check = integration_tests("transit.certificate", {
    "cert-expiring": "expires in",
})
