"""transit.certificate on hand-made certificates, then on the reference service."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from checks.transit.certificate import certificate_verdict, host_matches_certificate
from harness.outcomes import Outcome

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
