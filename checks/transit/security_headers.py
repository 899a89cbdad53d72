"""transit.security_headers: every sampled HTTPS response carries the policy's modern header set."""

from __future__ import annotations

import re

import pytest

from harness.evidence import EvidenceRecorder
from harness.evidence_kinds import HeaderTranscriptEvidence
from harness.outcomes import Verdict
from harness.policy import Policy
from harness.probes.http import EdgeSamples, HttpSample

# The page's "Security headers" heading has no text under it; every verdict on
# headers says so, and says where the required set comes from.
HEADERS_BASIS = ("The published page's own 'Security headers' section lists no headers; the "
                 "harness holds the edge to the usual modern set from the audit policy "
                 "(headers.required, headers.frame_protection, headers.forbid_version_banner).")

# Headers that advertise the server's software; forbidden when forbid_version_banner.
BANNER_HEADERS = ("x-powered-by", "x-aspnet-version", "x-aspnetmvc-version")
_VERSION_NUMBER = re.compile(r"\d+(?:\.\d+)+|/\s*\d")


def _csp_directives(value: str) -> dict[str, str]:
    directives: dict[str, str] = {}
    for part in value.split(";"):
        name, _, rest = part.strip().partition(" ")
        if name:
            directives.setdefault(name.lower(), rest.strip())
    return directives


def _frame_protection(sample: HttpSample, alternatives: tuple[str, ...]) -> str | None:
    """Which alternative protects this response from framing, None if none does."""
    for alternative in alternatives:
        header, _, directive = alternative.partition(":")
        for value in sample.header_values(header):
            if directive:
                if directive.lower() in _csp_directives(value):
                    return alternative
            elif header == "x-frame-options":
                # Only DENY and SAMEORIGIN are honoured by browsers (ALLOW-FROM is obsolete).
                if value.strip().upper() in ("DENY", "SAMEORIGIN"):
                    return alternative
            elif value.strip():
                return alternative
    return None


def version_banners(sample: HttpSample) -> list[str]:
    """Headers of a response that reveal server software versions."""
    found = [f"Server: {v}" for v in sample.header_values("server") if _VERSION_NUMBER.search(v)]
    for header in BANNER_HEADERS:
        found += [f"{header}: {v}" for v in sample.header_values(header)]
    return found


def security_headers_verdict(samples: EdgeSamples, policy: Policy) -> Verdict:
    """Every sampled HTTPS response carries the policy's required headers, frame
    protection, and (if the policy forbids it) no version banner."""
    rows, problems = [], []
    for sample in samples.samples:
        missing = [h for h in policy.headers.required
                   if not any(v.strip() for v in sample.header_values(h))]
        framing = _frame_protection(sample, policy.headers.frame_protection)
        banners = version_banners(sample) if policy.headers.forbid_version_banner else []
        rows.append({"url": sample.url, "status": sample.status, "missing": missing,
                     "frame_protection": framing, "version_banners": banners,
                     "headers": {h: list(sample.header_values(h)) for h in
                                 (*policy.headers.required, "x-frame-options", "server",
                                  *BANNER_HEADERS)}})
        if missing:
            problems.append(f"{sample.path} ({sample.status}) lacks {', '.join(missing)}")
        if framing is None and policy.headers.frame_protection:
            problems.append(f"{sample.path} has no frame protection "
                            f"({' or '.join(policy.headers.frame_protection)})")
        if banners:
            problems.append(f"{sample.path} shows a version banner ({'; '.join(banners)})")
    details = {"basis": HEADERS_BASIS, "required": list(policy.headers.required),
               "frame_protection": list(policy.headers.frame_protection),
               "forbid_version_banner": policy.headers.forbid_version_banner, "samples": rows}
    unreached = samples.origin_not_reached(problems)
    if unreached:
        return Verdict.error(unreached, **details)
    if problems:
        return Verdict.failed("Security headers are missing or unsafe: " + "; ".join(problems)
                              + ". (The page itself lists no headers; this is the policy's modern set.)",
                              **details)
    return Verdict.passed(f"All {len(rows)} sampled responses carry {', '.join(policy.headers.required)}, "
                          "frame protection and no version banner. (The page itself lists no "
                          "headers; this is the policy's modern set.)", **details)


@pytest.mark.claims("TRANSIT-SECURITY-HEADERS")
@pytest.mark.access("edge")
def check_security_headers(https_samples: EdgeSamples, policy: Policy,
                           evidence: EvidenceRecorder) -> None:
    verdict = security_headers_verdict(https_samples, policy)
    evidence.attach("security-headers", HeaderTranscriptEvidence.model_validate(verdict.details))
    evidence.conclude(verdict)
