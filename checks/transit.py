"""In transit: the edge's TLS, its headers, no plaintext way in, HTTPS to upstreams.

The page promises "TLS 1.3", "HSTS enforced", "Certificate auto-renewed",
"No traffic reaches the origin server unencrypted" and "API-to-LLM and
API-to-Resend calls are HTTPS"; its "Security headers" section is empty, so
the harness holds the edge to the modern set in the policy.

Each check is a pure ``<name>_verdict(observation, policy)`` over frozen
observations from ``harness/probes/{tls,http,listeners,outbound}.py``. The TLS
stage is one sslyze scan and the HTTPS samples one round of GETs, both
session-scoped fixtures shared by the checks that read them.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import pytest

from harness.evidence import EvidenceRecorder
from harness.outcomes import Verdict
from harness.policy import Policy
from harness.probes.http import EdgeSamples, HttpSample, PlainHttpAnswer, fetch_samples, public_url
from harness.probes.listeners import OriginSurvey, SkipReason, survey_docker_origin, survey_origin
from harness.probes.outbound import PROMISED_UPSTREAMS, OutboundExercise, observe_outbound
from harness.probes.tls import (
    SUPPLIED_CA_STORE,
    TLS_VERSION_COMMANDS,
    CertificateObservation,
    TlsScan,
    scan_tls,
)
from harness.profile import Edge, TargetProfile
from harness.redaction import KnownSecrets

# The page's "Security headers" heading has no text under it; every verdict on
# headers says so, and says where the required set comes from.
HEADERS_BASIS = ("The published page's own 'Security headers' section lists no headers; the "
                 "harness holds the edge to the usual modern set from the audit policy "
                 "(headers.required, headers.frame_protection, headers.forbid_version_banner).")

# A plaintext answer counts as "only a redirect" when it is one of these statuses
# (permanent redirects: a temporary one invites the client back to plain HTTP) ...
REDIRECT_STATUSES = (301, 308)
# ... and its body is at most this long and of one of these types: enough for a
# web server's stock "301 Moved Permanently" page (nginx: about 170 bytes), far
# too little for a page, an API answer or a file.
REDIRECT_MAX_BODY_BYTES = 512
REDIRECT_BODY_TYPES = ("", "text/html", "text/plain")

# Headers that advertise the server's software; forbidden when forbid_version_banner.
BANNER_HEADERS = ("x-powered-by", "x-aspnet-version", "x-aspnetmvc-version")
_VERSION_NUMBER = re.compile(r"\d+(?:\.\d+)+|/\s*\d")


def _evidence(value: Any) -> Any:
    """Observations are frozen dataclasses; evidence files want plain JSON-able data."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return value


# --- transit.tls_versions -------------------------------------------------------------------

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


# --- transit.certificate --------------------------------------------------------------------

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
        "validation_error": cert.validation_error,
        "built_in_stores_not_judged": dict(cert.other_stores),
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
        f"{_describe_key(cert)} key.", **details)


# --- transit.hsts ---------------------------------------------------------------------------

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


# Statuses a proxy answers with when what is behind it did not answer.
GATEWAY_ERRORS = frozenset({502, 503, 504})


def origin_not_reached(samples: EdgeSamples) -> str | None:
    """Why the samples say nothing about the service's own responses, or None.

    When every sampled response is a gateway error, only the edge's error
    page was seen: headers the service adds (or drops) were never observed.
    """
    statuses = [sample.status for sample in samples.samples]
    if statuses and all(status in GATEWAY_ERRORS for status in statuses):
        return (f"Every sampled response is a gateway error (statuses {', '.join(map(str, statuses))}): "
                "the service behind the edge did not answer, so its own responses were not observed.")
    return None


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
    if not samples.samples:
        return Verdict.error("No HTTPS response was sampled (edge.sample_paths is empty).", **details)
    if problems:
        return Verdict.failed("HSTS is not enforced on every response: " + "; ".join(problems) + ".",
                              **details)
    unreached = origin_not_reached(samples)
    if unreached:
        return Verdict.error(unreached, **details)
    return Verdict.passed(f"All {len(rows)} sampled responses (statuses "
                          f"{', '.join(str(s.status) for s in samples.samples)}) send HSTS with "
                          f"max-age ≥ {policy.hsts.min_max_age_s}"
                          + (" and includeSubDomains." if policy.hsts.require_include_subdomains else "."),
                          **details)


# --- transit.security_headers ---------------------------------------------------------------

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
    if not samples.samples:
        return Verdict.error("No HTTPS response was sampled (edge.sample_paths is empty).", **details)
    if problems:
        return Verdict.failed("Security headers are missing or unsafe: " + "; ".join(problems)
                              + ". (The page itself lists no headers; this is the policy's modern set.)",
                              **details)
    unreached = origin_not_reached(samples)
    if unreached:
        return Verdict.error(unreached, **details)
    return Verdict.passed(f"All {len(rows)} sampled responses carry {', '.join(policy.headers.required)}, "
                          "frame protection and no version banner. (The page itself lists no "
                          "headers; this is the policy's modern set.)", **details)


# --- transit.http_redirect_only -------------------------------------------------------------

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


# --- transit.origin_not_plaintext -----------------------------------------------------------

def _no_answer_observed(answer: PlainHttpAnswer) -> bool:
    """Whether the probe ended without seeing the listener's behaviour: the connection was
    not made, or nothing came back before the harness's timeout."""
    return not answer.connected or (answer.error or "").startswith("no answer within")


def origin_not_plaintext_verdict(survey: OriginSurvey) -> Verdict:
    """No listener of the service's processes answers plain HTTP with anything but a redirect
    to https (a TLS listener that rejects plain HTTP with a 4xx is fine). A listener whose
    probe saw nothing (no connection, no answer in time) is unverified, never fine."""
    rows, exposed, unverified = [], [], []
    for probed in survey.listeners:
        sock, answer = probed.socket, probed.answer
        where = f"{sock.process} ({sock.command}, pid {sock.pid}) on {sock.address}:{sock.port}"
        row: dict[str, Any] = {"process": sock.process, "pid": sock.pid, "command": sock.command,
                               "address": sock.address, "port": sock.port}
        if answer is None:
            row["judgement"] = f"not probed: {probed.skipped}"
            if probed.reason not in (SkipReason.JUDGED_ELSEWHERE, SkipReason.HARNESS_FAKE,
                                     SkipReason.CONTAINER_LOCAL):
                unverified.append(f"{where}: {probed.skipped or 'not probed'}")
        elif _no_answer_observed(answer):
            row["judgement"] = f"unverified: {answer.error or 'no connection'}"
            unverified.append(f"{where}: {answer.error or 'no connection'}")
        elif not answer.answered_http:
            row["judgement"] = ("does not speak plain HTTP ("
                                + (answer.error or f"answered {answer.first_line!r}") + ")")
        elif (answer.status is not None and 300 <= answer.status < 400 and answer.location
              and answer.location.lower().startswith("https://")):
            row["judgement"] = f"redirects to {answer.location}"
        elif answer.speaks_tls and answer.status is not None and 400 <= answer.status < 500:
            row["judgement"] = f"a TLS listener; rejects plain HTTP with {answer.status}"
        else:
            row["judgement"] = f"SERVES PLAIN HTTP: {answer.first_line}"
            exposed.append(f"{where} answers plain HTTP with {answer.first_line!r}")
        rows.append(row)
    details = {"processes": list(survey.processes), "listeners": rows,
               "unreadable": list(survey.unreadable)}
    if exposed:
        return Verdict.failed("The origin is reachable without TLS: " + "; ".join(exposed) + ".", **details)
    if unverified:
        return Verdict.error("Some listeners could not be verified: " + "; ".join(unverified) + ".",
                             **details)
    if survey.unreadable:
        return Verdict.error("Some of the processes' sockets could not be read, so a listener may "
                             "have been missed: " + "; ".join(survey.unreadable[:5]) + ".", **details)
    if not survey.listeners:
        return Verdict.error(f"No TCP listener was found for {', '.join(survey.processes)}, so "
                             "nothing was probed.", **details)
    probed_count = sum(1 for p in survey.listeners if p.answer is not None)
    return Verdict.passed(f"None of the {probed_count} TCP listeners of "
                          f"{', '.join(survey.processes)} serves plain HTTP "
                          f"({len(survey.listeners) - probed_count} judged elsewhere).", **details)


# --- transit.outbound_https -----------------------------------------------------------------

OUTBOUND_ATTESTATION = (
    "No capture of the upstream calls is configured (profile [capture]). Attest that the API "
    "calls the LLM provider (Anthropic) and Resend only over https:// with certificate "
    "verification: show the configured upstream base URLs and an egress log or proxy capture "
    "showing TLS connections to both.")


def outbound_https_verdict(exercise: OutboundExercise) -> Verdict:
    """The LLM and Resend calls both reached the fakes' TLS listener, and nothing at all
    reached the plaintext decoy."""
    details: dict[str, Any] = {
        "steps": [_evidence(s) for s in exercise.steps],
        "captured": [_evidence(r) for r in exercise.captured],
        "since_seq": exercise.since_seq, "waited_s": exercise.waited_s,
        "canary_removed": exercise.canary_removed, "canary_cleanup_error": exercise.cleanup_error,
    }
    plaintext, unseen, over_tls = [], [], []
    for upstream, prefix in PROMISED_UPSTREAMS.items():
        calls = [r for r in exercise.captured if r.path.startswith(prefix)]
        clear = [r for r in calls if r.listener != "tls"]
        if clear:
            plaintext.append(f"the {upstream} call ({clear[0].method} {clear[0].path}) arrived on "
                             f"the {clear[0].listener} listener")
        elif not calls:
            unseen.append(upstream)
        else:
            over_tls.append(upstream)
    promised = tuple(PROMISED_UPSTREAMS.values())
    others = [r for r in exercise.captured if r.listener != "tls" and not r.path.startswith(promised)]
    plaintext += [f"{r.method} {r.path} arrived on the {r.listener} listener" for r in others]
    note = ("" if exercise.canary_removed
            else f" (The canary account could not be removed: {exercise.cleanup_error}.)")
    if plaintext:
        return Verdict.failed("Outbound calls went out without TLS: " + "; ".join(plaintext) + "."
                              + note, **details)
    if unseen:
        return Verdict.error(f"The {' and '.join(unseen)} call never reached the fakes within "
                             f"{exercise.waited_s:g}s, so its transport could not be observed." + note,
                             **details)
    return Verdict.passed(f"The {' and '.join(over_tls)} calls arrived over TLS and nothing reached "
                          "the plaintext decoy." + note, **details)


# --- Fixtures and checks --------------------------------------------------------------------

@pytest.fixture(scope="session")
def tls_scan(profile: TargetProfile, policy: Policy) -> TlsScan:
    """The single sslyze scan of the edge, shared by the TLS checks."""
    return scan_tls(profile.edge, policy)


@pytest.fixture(scope="session")
def https_samples(profile: TargetProfile, policy: Policy) -> EdgeSamples:
    """The edge's HTTPS answers to every sampled path, shared by the header checks."""
    return fetch_samples(profile.edge, policy, "https")


@pytest.mark.claims("TRANSIT-TLS13")
def check_tls_versions(tls_scan: TlsScan, policy: Policy, evidence: EvidenceRecorder) -> None:
    verdict = tls_versions_verdict(tls_scan, policy)
    evidence.attach("tls-versions", verdict.details)
    evidence.attach("sslyze-scan", _evidence(tls_scan))
    evidence.conclude(verdict)


@pytest.mark.claims("TRANSIT-TLS13", "TRANSIT-CERT-RENEWED")
def check_certificate(tls_scan: TlsScan, policy: Policy, evidence: EvidenceRecorder) -> None:
    verdict = certificate_verdict(tls_scan, policy)
    evidence.attach("certificate", verdict.details)
    evidence.conclude(verdict)


@pytest.mark.claims("TRANSIT-HSTS")
def check_hsts(https_samples: EdgeSamples, policy: Policy, evidence: EvidenceRecorder) -> None:
    # sslyze's own reading of HSTS on "/" is in transit.tls_versions' scan evidence; this
    # check does not depend on the scan, so a scanner failure cannot make it ERROR.
    verdict = hsts_verdict(https_samples, policy)
    evidence.attach("hsts", verdict.details)
    evidence.conclude(verdict)


@pytest.mark.claims("TRANSIT-SECURITY-HEADERS")
def check_security_headers(https_samples: EdgeSamples, policy: Policy,
                           evidence: EvidenceRecorder) -> None:
    verdict = security_headers_verdict(https_samples, policy)
    evidence.attach("security-headers", verdict.details)
    evidence.conclude(verdict)


@pytest.mark.claims("TRANSIT-NO-PLAINTEXT-ORIGIN")
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
    evidence.attach("http-redirects", verdict.details)
    evidence.conclude(verdict)


@pytest.mark.claims("TRANSIT-NO-PLAINTEXT-ORIGIN")
def check_origin_not_plaintext(profile: TargetProfile, policy: Policy, evidence: EvidenceRecorder) -> None:
    if profile.backend == "docker" and profile.docker is not None:
        survey = survey_docker_origin(profile, policy)
    elif profile.backend == "local" and profile.local is not None and profile.local.processes:
        survey = survey_origin(profile, policy)
    else:
        evidence.manual(f"The harness cannot list the origin's listeners on this target (backend "
                        f"{profile.backend!r}, no [local] processes or [docker] project). By hand: "
                        "list every TCP listener of the service's hosts (ss -ltnp) and show that "
                        "none but the edge's 443 and its redirecting 80 answers plain HTTP.")
    verdict = origin_not_plaintext_verdict(survey)
    evidence.attach("origin-listeners", verdict.details)
    evidence.conclude(verdict)


@pytest.mark.claims("INTERNAL-OUTBOUND-HTTPS")
def check_outbound_https(profile: TargetProfile, policy: Policy, known_secrets: KnownSecrets,
                         evidence: EvidenceRecorder) -> None:
    if profile.capture is None:
        evidence.manual(OUTBOUND_ATTESTATION)
    if profile.api is None or not profile.api.canaries:
        evidence.manual("The profile does not allow canary accounts through the API (api.canaries), "
                        "so the upstream calls cannot be triggered. " + OUTBOUND_ATTESTATION)
    verdict = outbound_https_verdict(observe_outbound(profile, policy, known_secrets))
    evidence.attach("outbound-calls", verdict.details)
    evidence.conclude(verdict)
