"""transit.tls_versions: the edge accepts only the policy's protocol versions, each one tested."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from harness.evidence import EvidenceRecorder
from harness.evidence_kinds import TlsVersionsEvidence
from harness.outcomes import Verdict
from harness.policy import Policy
from harness.probes.tls import TLS_VERSION_COMMANDS, TlsScan


def tls_versions_verdict(scan: TlsScan, policy: Policy) -> Verdict:
    """Only the policy's allowed protocol versions may be accepted, and each version must
    have been tested (a scan command in ERROR makes the check ERROR, never PASS)."""
    allowed = set(policy.tls.allowed_versions)
    table = [{"version": probe.version, "allowed": probe.version in allowed,
              "tested": probe.completed, "accepted": probe.accepted,
              "cipher_suites": list(probe.cipher_suites), "error": probe.error}
             for probe in scan.versions]
    details: dict[str, Any] = {"target": f"{scan.host} at {scan.address}:{scan.port}",
                               "allowed_versions": list(policy.tls.allowed_versions),
                               "versions": table, "sslyze_version": scan.sslyze_version}
    missing = [v for v in TLS_VERSION_COMMANDS if scan.version(v) is None]
    forbidden = [p for p in scan.versions if p.accepted and p.version not in allowed]
    untested = [p for p in scan.versions if not p.completed]
    if forbidden:
        listed = "; ".join(f"{p.version} ({len(p.cipher_suites)} cipher suites, e.g. "
                           f"{', '.join(p.cipher_suites[:2]) or 'none listed'})" for p in forbidden)
        return Verdict.failed(
            f"The edge accepts {', '.join(p.version for p in forbidden)}, which the policy does not "
            f"allow (allowed: {', '.join(policy.tls.allowed_versions)}): {listed}.", **details)
    if missing or untested:
        reasons = [f"{v}: not scanned" for v in missing]
        reasons += [f"{p.version}: {p.error}" for p in untested]
        return Verdict.error("Could not test every protocol version, so the edge's versions are "
                             "unverified: " + "; ".join(reasons) + ".", **details)
    accepted = [p for p in scan.versions if p.accepted]
    if not accepted:
        return Verdict.error("The scan completed but the edge accepted no protocol version at all, "
                             "which contradicts the handshake that connected.", **details)
    return Verdict.passed(
        f"The edge accepts only {', '.join(p.version for p in accepted)} "
        f"({sum(len(p.cipher_suites) for p in accepted)} cipher suites); "
        f"every version from SSLv2 to TLSv1.3 was tried.", **details)


@pytest.mark.claims("TRANSIT-TLS13")
@pytest.mark.access("edge")
def check_tls_versions(tls_scan: TlsScan, policy: Policy, evidence: EvidenceRecorder) -> None:
    verdict = tls_versions_verdict(tls_scan, policy)
    evidence.attach("tls-versions", TlsVersionsEvidence.model_validate(verdict.details))
    evidence.attach("sslyze-scan", dataclasses.asdict(tls_scan))
    evidence.conclude(verdict)
