"""transit.hsts: every sampled HTTPS response carries HSTS of the policy's strength."""

from __future__ import annotations

from typing import Any

import pytest

from harness.evidence import EvidenceRecorder
from harness.evidence_kinds import HeaderTranscriptEvidence
from harness.outcomes import Verdict
from harness.policy import Policy
from harness.probes.http import EdgeSamples


def parse_hsts(value: str) -> tuple[int | None, bool, bool]:
    """``(max_age, include_subdomains, preload)`` of a Strict-Transport-Security value
    (RFC 6797: directive names are case-insensitive, values may be quoted)."""
    max_age: int | None = None
    include_subdomains = preload = False
    for directive in value.split(";"):
        name, _, raw = directive.strip().partition("=")
        name = name.strip().lower()
        if name == "max-age":
            raw = raw.strip().strip('"')
            max_age = int(raw) if raw.isdigit() else None
        elif name == "includesubdomains":
            include_subdomains = True
        elif name == "preload":
            preload = True
    return max_age, include_subdomains, preload


def hsts_verdict(samples: EdgeSamples, policy: Policy) -> Verdict:
    """Every sampled HTTPS response carries HSTS with max-age ≥ policy and, if the policy
    requires it, includeSubDomains. A client honours the first header when several are sent."""
    rows, problems = [], []
    for sample in samples.samples:
        values = sample.header_values("strict-transport-security")
        row: dict[str, Any] = {"url": sample.url, "status": sample.status, "headers": list(values)}
        if not values:
            problems.append(f"{sample.path} ({sample.status}) sends no Strict-Transport-Security")
        else:
            max_age, subdomains, preload = parse_hsts(values[0])
            row.update(max_age=max_age, include_subdomains=subdomains, preload=preload)
            if max_age is None:
                problems.append(f"{sample.path} sends HSTS without a valid max-age ({values[0]!r})")
            elif max_age < policy.hsts.min_max_age_s:
                problems.append(f"{sample.path} sends HSTS max-age={max_age} "
                                f"(policy: ≥ {policy.hsts.min_max_age_s})")
            if policy.hsts.require_include_subdomains and not subdomains:
                problems.append(f"{sample.path} sends HSTS without includeSubDomains")
        rows.append(row)
    details = {"samples": rows, "min_max_age_s": policy.hsts.min_max_age_s,
               "require_include_subdomains": policy.hsts.require_include_subdomains}
    unreached = samples.origin_not_reached(problems)
    if unreached:
        return Verdict.error(unreached, **details)
    if problems:
        return Verdict.failed("HSTS is not enforced on every response: " + "; ".join(problems) + ".",
                              **details)
    return Verdict.passed(f"All {len(rows)} sampled responses (statuses "
                          f"{', '.join(str(s.status) for s in samples.samples)}) send HSTS with "
                          f"max-age ≥ {policy.hsts.min_max_age_s}"
                          + (" and includeSubDomains." if policy.hsts.require_include_subdomains else "."),
                          **details)


@pytest.mark.claims("TRANSIT-HSTS")
@pytest.mark.access("edge")
def check_hsts(https_samples: EdgeSamples, policy: Policy, evidence: EvidenceRecorder) -> None:
    # sslyze's own reading of HSTS on "/" is in transit.tls_versions' scan evidence; this
    # check does not depend on the scan, so a scanner failure cannot make it ERROR.
    verdict = hsts_verdict(https_samples, policy)
    evidence.attach("hsts", HeaderTranscriptEvidence.model_validate(verdict.details))
    evidence.conclude(verdict)
