"""transit.http_redirect_only: the edge's plaintext port only redirects to the same https:// URL."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from harness.evidence import EvidenceRecorder
from harness.evidence_kinds import HeaderTranscriptEvidence
from harness.outcomes import Verdict
from harness.policy import Policy
from harness.probes.http import EdgeSamples, HttpSample, PlaintextPortVisit, public_url, visit_plaintext_port
from harness.profile import NO_HTTP_PORT, Edge, TargetProfile

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


def _seen(visit: PlaintextPortVisit) -> dict[str, object]:
    knock, https = visit.knock, visit.https
    return {"plaintext_port": {"address": knock.address, "port": knock.port, "state": knock.state,
                               "detail": knock.detail, "icmp_from": knock.icmp_from,
                               "waited_s": round(knock.waited_s, 3), "wait": knock.wait,
                               "standard_port": visit.standard_port},
            "profile_says_none": visit.profile_says_none,
            "https_port": None if https is None else {"address": https.address, "port": https.port,
                                                      "answered": https.answered, "detail": https.detail}}


def _turned_away(visit: PlaintextPortVisit, edge: Edge, details: dict[str, object]) -> Verdict:
    """The verdict on a plaintext port that accepted no connection."""
    knock, https, host, port = visit.knock, visit.https, edge.host, visit.port
    if knock.state == "failed":
        return Verdict.error(f"Cannot reach {knock.address}:{port}: {knock.detail}; nothing was observed of "
                             "the edge's plaintext port.", **details)
    refused = knock.state == "refused"
    if port != visit.standard_port:
        # Browsers send http:// to the standard port: a refusal elsewhere says nothing of it.
        return Verdict.error(f"The profile names plaintext port {port} (edge.http_port), but nothing "
                             f"{'listens' if refused else 'answers'} there ({knock.detail}): check the "
                             f"profile. Port {visit.standard_port}, where browsers send http://, was not "
                             "looked at, so this is no verdict.", **details)
    seen = (f"Port {port} of {host} refuses connections, as seen from this host: {knock.detail}" if refused
            else f"No answer on port {port} of {host} within {knock.wait}")
    if https is None or not https.answered:
        why = "it was not asked" if https is None else https.detail
        return Verdict.error(f"{seen}; HTTPS on port {edge.https_port} did not answer either ({why}): "
                             "the edge is down or out of reach from here, so this is no verdict on its "
                             "plaintext port.", **details)
    up = f"HTTPS on port {edge.https_port} answered ({https.detail}), so the edge was up"
    if not refused:
        # Silence is no observation: the SYN may have been dropped by this host's own egress rules
        # as well as by the edge's firewall.
        return Verdict.error(f"{seen}: the port may be filtered on either side (this host's egress, the "
                             f"network path, or the edge), so nothing was observed there; {up}. Someone "
                             "who knows the edge's firewall can waive this check (README, Waivers).",
                             **details)
    said = f", as the profile says (edge.http_port = \"{NO_HTTP_PORT}\")" if visit.profile_says_none else ""
    return Verdict.passed(f"{seen}. Nothing serves plain HTTP there{said}; {up}.", **details)


def plaintext_port_verdict(visit: PlaintextPortVisit, edge: Edge) -> Verdict:
    """The promise holds when the plaintext port only redirects (:func:`http_redirect_verdict`),
    or when the standard port 80 refuses connections (ECONNREFUSED: a TCP reset, or an ICMP port
    unreachable not sent by this host) while the edge's HTTPS port answers: nothing is served in
    plain text there. Silence is ERROR (filtered somewhere, nothing observed), as is a refusal
    that is not the edge's (an ICMP host unreachable, this host's own firewall), a refusal or
    silence on a configured port other than 80 (the profile is to be checked), and HTTPS silent
    too (the edge is down). What the profile says (``http_port = "none"``) is reported beside
    what was observed, never in its place."""
    claim = f'edge.http_port = "{NO_HTTP_PORT}"'
    if visit.samples is not None:
        verdict = http_redirect_verdict(visit.samples, edge)
        if not visit.profile_says_none:
            return verdict.model_copy(update={"details": {**verdict.details, **_seen(visit)}})
        return verdict.model_copy(update={
            "message": (f"The profile says the edge serves no plain HTTP ({claim}), but port {visit.port} "
                        f"of {edge.host} answered. {verdict.message}"),
            "details": {**verdict.details, **_seen(visit)}})
    return _turned_away(visit, edge, {"samples": [], **_seen(visit)})


@pytest.mark.claims("TRANSIT-NO-PLAINTEXT-ORIGIN")
@pytest.mark.access("edge")
def check_http_redirect_only(profile: TargetProfile, policy: Policy, evidence: EvidenceRecorder) -> None:
    # A profile that says the edge has no plaintext port (http_port = "none") is not proof
    # of it: the probe looks at port 80 all the same, and the verdict judges what it saw.
    verdict = plaintext_port_verdict(visit_plaintext_port(profile.edge, policy), profile.edge)
    evidence.attach("http-redirects", HeaderTranscriptEvidence.model_validate(verdict.details))
    evidence.conclude(verdict)
