"""transit.certificate: the edge certificate chains to the trust anchor, names the host, is not
about to expire, and has a key of the policy's strength.

It is judged the way clients judge it (OpenSSL, testssl.sh, browsers): the chain a client
builds to the anchor, the host name against the subject alternative names, every validity
window of the chain and the leaf's days left at the check's time. Stricter RFC 5280 and
CA/Browser Forum findings (a leaf without an Authority Key Identifier, say) are recorded
in plain words in the evidence and never fail the check: clients accept them, and the
promise is a valid, renewed certificate."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from typing import Any

import pytest

from harness.evidence import EvidenceRecorder
from harness.outcomes import Verdict
from harness.policy import Policy
from harness.probes.tls import SUPPLIED_CA_STORE, CertificateObservation, TlsScan


def host_matches_certificate(host: str, dns_names: tuple[str, ...], ip_addresses: tuple[str, ...]) -> bool:
    """RFC 6125 matching of a host name (or IP address) against SAN entries.

    A wildcard stands for exactly one left-most label (``*.votriz.test`` matches
    ``a.votriz.test``, not ``votriz.test`` nor ``a.b.votriz.test``).
    """
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is not None:
        return any(ipaddress.ip_address(entry) == ip for entry in ip_addresses)
    wanted = host.rstrip(".").lower()
    for name in dns_names:
        name = name.rstrip(".").lower()
        if name == wanted:
            return True
        if name.startswith("*.") and "." in wanted:
            first, rest = wanted.split(".", 1)
            if first and rest == name[2:]:
                return True
    return False


def _key_problem(cert: CertificateObservation, policy: Policy) -> str | None:
    bits = cert.key_bits or 0
    if cert.key_type == "RSA" and bits < policy.tls.min_rsa_bits:
        return f"its RSA key has {bits} bits (policy: at least {policy.tls.min_rsa_bits})"
    if cert.key_type == "EC" and bits < policy.tls.min_ec_bits:
        return f"its EC key ({cert.curve}) has {bits} bits (policy: at least {policy.tls.min_ec_bits})"
    if cert.key_type in ("Ed25519", "Ed448", "RSA", "EC"):
        return None
    return f"its key type {cert.key_type} is not one the policy accepts (RSA, EC, Ed25519, Ed448)"


def _describe_key(cert: CertificateObservation) -> str:
    if cert.key_type == "EC":
        return f"EC {cert.curve} ({cert.key_bits} bits)"
    return f"{cert.key_type} {cert.key_bits} bits" if cert.key_bits else cert.key_type


def certificate_verdict(scan: TlsScan, policy: Policy, *, now: datetime | None = None) -> Verdict:
    """The edge certificate chains to the profile's trust anchor, names the host, is valid
    for at least ``policy.tls.min_certificate_days_left`` more days at ``now``, and has a key
    of the policy's strength. Only the supplied trust anchor's result is judged (the public
    Mozilla store only when the profile names no anchor); the chain was validated at scan
    time, the days left are counted at ``now``."""
    now = now or datetime.now(UTC)
    cert = scan.certificate
    if cert is None:
        return Verdict.error(f"No certificate was observed on {scan.host}:{scan.port}: "
                             f"{scan.certificate_error or 'unknown reason'}.")
    days_left = (cert.not_after - now).total_seconds() / 86400
    details: dict[str, Any] = {
        "subject": cert.subject, "issuer": cert.issuer, "serial": cert.serial,
        "sha256_fingerprint": cert.sha256_fingerprint,
        "not_before": cert.not_before.isoformat(), "not_after": cert.not_after.isoformat(),
        "judged_at": now.isoformat(), "days_left": round(days_left, 2),
        "dns_names": list(cert.dns_names), "ip_addresses": list(cert.ip_addresses),
        "key": _describe_key(cert), "chain_sent": list(cert.chain_subjects),
        "trust_store_judged": cert.anchor_store, "verified_chain": list(cert.verified_chain_subjects),
        "validation_error": cert.validation_error, "validated_by": cert.validated_by,
        "issuers": [{"subject": issuer.subject, "not_before": issuer.not_before.isoformat(),
                     "not_after": issuer.not_after.isoformat()} for issuer in cert.issuers],
        "built_in_stores_not_judged": dict(cert.other_stores),
        "strict_verifier_accepts": cert.strict_verifier_accepts,
        "lint_findings_not_judged": [{"certificate": finding.certificate, "rule": finding.rule,
                                      "description": finding.description}
                                     for finding in cert.lint_findings],
    }
    if cert.chains_to_anchor is None:
        return Verdict.error("The scan gave no validation result for the trust store to judge "
                             "(the profile's trust anchor, or the public store without one).",
                             **details)
    problems = []
    if not cert.chains_to_anchor:
        against = ("the profile's trust anchor" if cert.anchor_store == SUPPLIED_CA_STORE
                   else f"the {cert.anchor_store} trust store")
        problems.append(f"it does not validate against {against} "
                        f"({cert.validation_error or 'no reason given'})")
    if not host_matches_certificate(scan.host, cert.dns_names, cert.ip_addresses):
        problems.append(f"it does not name {scan.host} (SAN: "
                        f"{', '.join(cert.dns_names + cert.ip_addresses) or 'none'})")
    if cert.not_before > now:
        problems.append(f"it is not valid before {cert.not_before.isoformat()}")
    for issuer in cert.issuers:
        if issuer.not_after <= now:
            problems.append(f"its issuer {issuer.subject} expired on {issuer.not_after.date().isoformat()}")
        elif issuer.not_before > now:
            problems.append(f"its issuer {issuer.subject} is not valid before "
                            f"{issuer.not_before.isoformat()}")
    if days_left < policy.tls.min_certificate_days_left:
        when = (f"expires in {days_left:.1f} days" if days_left >= 0
                else f"expired {-days_left:.1f} days ago")
        problems.append(f"it {when}, on {cert.not_after.date().isoformat()} (policy: at least "
                        f"{policy.tls.min_certificate_days_left} days left, as auto-renewal would keep)")
    key_problem = _key_problem(cert, policy)
    if key_problem:
        problems.append(key_problem)
    if problems:
        return Verdict.failed(f"The edge certificate for {scan.host} fails: " + "; ".join(problems) + ".",
                              **details)
    anchor = ("the profile's trust anchor" if cert.anchor_store == SUPPLIED_CA_STORE
              else f"the {cert.anchor_store} trust store (the profile names no trust anchor)")
    return Verdict.passed(
        f"The edge certificate for {scan.host} chains to {anchor}, names the host, "
        f"has {days_left:.0f} days left (policy: ≥ {policy.tls.min_certificate_days_left}) and an "
        f"{_describe_key(cert)} key.{_lint_note(cert)}", **details)


def _lint_note(cert: CertificateObservation) -> str:
    """One sentence on the strict-profile findings recorded beside a PASS, if any."""
    count = len(cert.lint_findings)
    if count == 0:
        return ""
    first = cert.lint_findings[0].description
    more = f" and {count - 1} more" if count > 1 else ""
    return (f" Recorded, not judged (clients accept it): {first}{more}"
            " (see the evidence).")


@pytest.mark.claims("TRANSIT-TLS13", "TRANSIT-CERT-RENEWED")
@pytest.mark.access("edge")
def check_certificate(tls_scan: TlsScan, policy: Policy, evidence: EvidenceRecorder) -> None:
    verdict = certificate_verdict(tls_scan, policy)
    evidence.attach("certificate", verdict.details)
    evidence.conclude(verdict)
