"""transit.http_redirect_only: the edge's plaintext port only redirects to the same https:// URL."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from harness.evidence import EvidenceRecorder
from harness.evidence_kinds import HeaderTranscriptEvidence
from harness.outcomes import Verdict
from harness.policy import Policy
from harness.probes.http import EdgeSamples, HttpSample, fetch_samples, public_url
from harness.profile import Edge, TargetProfile

# A plaintext answer counts as "only a redirect" when it is one of these statuses
# (permanent redirects: a temporary one invites the client back to plain HTTP) ...
REDIRECT_STATUSES = (301, 308)
# ... and its body is at most this long and of one of these types: enough for a
# web server's stock "301 Moved Permanently" page (nginx: about 170 bytes), far
# too little for a page, an API answer or a file.
REDIRECT_MAX_BODY_BYTES = 512
REDIRECT_BODY_TYPES = ("", "text/html", "text/plain")


def _redirect_problem(sample: HttpSample, edge: Edge) -> str | None:
    expected = public_url("https", edge.host, edge.https_port, sample.path)
    what = (f"{sample.url} answered {sample.status} "
            f"({sample.content_type or 'no content type'}, {sample.body_bytes} bytes)")
    if sample.status not in REDIRECT_STATUSES:
        return f"{what} instead of a 301/308 redirect to {expected}"
    location = sample.header("location")
    if not location:
        return f"{what} without a Location header"
    target = urlsplit(location)
    path = target.path + (f"?{target.query}" if target.query else "")
    same_place = (target.scheme.lower() == "https"
                  and (target.hostname or "").lower() == edge.host.lower()
                  and (target.port or 443) == edge.https_port and path == sample.path)
    if not same_place:
        return f"{sample.url} redirects to {location}, not to {expected}"
    media_type = sample.content_type.split(";", 1)[0].strip().lower()
    if sample.body_bytes > REDIRECT_MAX_BODY_BYTES or media_type not in REDIRECT_BODY_TYPES:
        return (f"{what}: a redirect must carry at most a tiny stock page "
                f"(≤ {REDIRECT_MAX_BODY_BYTES} bytes of text/html or text/plain)")
    return None


def http_redirect_verdict(samples: EdgeSamples, edge: Edge) -> Verdict:
    """On the edge's plaintext port, every sampled path answers only a 301/308 redirect to
    the https:// URL of the same host and path, with at most a tiny redirect body."""
    rows, problems = [], []
    for sample in samples.samples:
        problem = _redirect_problem(sample, edge)
        rows.append({"url": sample.url, "status": sample.status, "location": sample.header("location"),
                     "content_type": sample.content_type, "body_bytes": sample.body_bytes,
                     "body_excerpt": sample.body_excerpt, "problem": problem})
        if problem:
            problems.append(problem)
    details = {"samples": rows, "redirect_statuses": list(REDIRECT_STATUSES),
               "redirect_max_body_bytes": REDIRECT_MAX_BODY_BYTES}
    if not samples.samples:
        return Verdict.error("No plain-HTTP response was sampled (edge.sample_paths is empty).",
                             **details)
    if problems:
        return Verdict.failed("The edge's plaintext port serves more than a redirect to HTTPS: "
                              + "; ".join(problems) + ".", **details)
    return Verdict.passed(f"Every sampled path on http port {samples.port} answers only a "
                          f"{'/'.join(map(str, sorted({s.status for s in samples.samples})))} "
                          "redirect to the same host and path over https.", **details)


@pytest.mark.claims("TRANSIT-NO-PLAINTEXT-ORIGIN")
@pytest.mark.access("edge")
def check_http_redirect_only(profile: TargetProfile, policy: Policy, evidence: EvidenceRecorder) -> None:
    if profile.edge.http_port is None:
        # No plaintext port in the profile is not proof that the edge has none: a
        # human must look, since port 80 may still be open and serve content.
        host = profile.edge.host
        evidence.manual(f"The profile declares no plaintext port at the edge (edge.http_port), so "
                        f"no plain-HTTP answer was observed. By hand: confirm port 80 of {host} is "
                        f"closed or redirects every path (301/308) to https://{host}/ on the same "
                        f"path, e.g. with curl -sI http://{host}/.")
    samples = fetch_samples(profile.edge, policy, "http")
    verdict = http_redirect_verdict(samples, profile.edge)
    evidence.attach("http-redirects", HeaderTranscriptEvidence.model_validate(verdict.details))
    evidence.conclude(verdict)
