"""Pure judgements of the in-transit checks on hand-made observations (no server)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from checks import transit
from checks.transit import (
    HEADERS_BASIS,
    certificate_verdict,
    check_http_redirect_only,
    check_origin_not_plaintext,
    check_outbound_https,
    host_matches_certificate,
    hsts_verdict,
    http_redirect_verdict,
    origin_not_plaintext_verdict,
    outbound_https_verdict,
    parse_hsts,
    security_headers_verdict,
    tls_versions_verdict,
)
from harness.evidence import EvidenceRecorder
from harness.outcomes import CheckOutcome, Outcome, Verdict
from harness.policy import load_policy
from harness.probes.http import EdgeSamples, HttpSample, PlainHttpAnswer
from harness.probes.listeners import ListeningSocket, OriginSurvey, ProbedListener, SkipReason
from harness.probes.outbound import CapturedRequest, ExerciseStep, OutboundExercise
from harness.probes.tls import CertificateObservation, TlsScan, TlsVersionProbe
from harness.profile import Edge, TargetProfile
from harness.redaction import KnownSecrets

POLICY = load_policy()
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
EDGE = Edge(host="votriz.test", address="127.0.0.1", https_port=8443, http_port=8080,
            trust_anchor=Path("/nonexistent/ca.pem"))

TLS13 = ("TLS_AES_256_GCM_SHA384", "TLS_AES_128_GCM_SHA256")


def versions(**accepted: tuple[str, ...]) -> tuple[TlsVersionProbe, ...]:
    names = ("SSLv2", "SSLv3", "TLSv1.0", "TLSv1.1", "TLSv1.2", "TLSv1.3")
    return tuple(TlsVersionProbe(v, True, v.replace(".", "_") in accepted,  # type: ignore[arg-type]
                                 accepted.get(v.replace(".", "_"), ()))
                 for v in names)


def cert(**changes: object) -> CertificateObservation:
    base = CertificateObservation(
        subject="CN=votriz.test", issuer="CN=Test CA", serial="1f", sha256_fingerprint="ab" * 32,
        not_before=NOW - timedelta(days=10), not_after=NOW + timedelta(days=80),
        dns_names=("votriz.test",), ip_addresses=("127.0.0.1",), key_type="EC", key_bits=256,
        curve="secp256r1", chain_subjects=("CN=votriz.test",), anchor_store="Supplied CA file",
        chains_to_anchor=True, validation_error=None,
        verified_chain_subjects=("CN=votriz.test", "CN=Test CA"), sni_host="votriz.test",
        other_stores=(("Mozilla", False),))
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def scan(vs: tuple[TlsVersionProbe, ...] | None = None, certificate: CertificateObservation | None = None,
         certificate_error: str | None = None) -> TlsScan:
    return TlsScan(host="votriz.test", address="127.0.0.1", port=8443,
                   versions=vs if vs is not None else versions(TLSv1_3=TLS13),
                   certificate=certificate, certificate_error=certificate_error, hsts=None,
                   http_headers_error=None, duration_s=0.4, sslyze_version="6.3.1")


# --- transit.tls_versions -------------------------------------------------------------------

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


# --- transit.certificate --------------------------------------------------------------------

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


# --- transit.hsts and transit.security_headers ----------------------------------------------

GOOD = (
    ("strict-transport-security", "max-age=63072000; includeSubDomains"),
    ("content-security-policy", "default-src 'self'; frame-ancestors 'none'"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("permissions-policy", "camera=()"),
    ("x-frame-options", "DENY"),
    ("server", "nginx"),
)
PATHS = (("/", 200), ("/healthz", 200), ("/api/v1/brands", 401), ("/does-not-exist", 404))


def https(headers: tuple[tuple[str, str], ...] = GOOD, *, only: str | None = None,
          other: tuple[tuple[str, str], ...] = GOOD) -> EdgeSamples:
    """Samples where every path has ``other`` headers except ``only`` (or all) with ``headers``."""
    samples = tuple(
        HttpSample("https", path, f"https://votriz.test:8443{path}", status,
                   headers if only in (None, path) else other, 20, "application/json")
        for path, status in PATHS)
    return EdgeSamples("https", "votriz.test", 8443, samples)


def without(*names: str, base: tuple[tuple[str, str], ...] = GOOD) -> tuple[tuple[str, str], ...]:
    return tuple((k, v) for k, v in base if k not in names)


def replaced(name: str, value: str) -> tuple[tuple[str, str], ...]:
    return (*without(name), (name, value))


def test_hsts_everywhere_passes() -> None:
    verdict = hsts_verdict(https(), POLICY)
    assert verdict.outcome is Outcome.PASS and "All 4 sampled responses" in verdict.message


@pytest.mark.parametrize("judge", [hsts_verdict, security_headers_verdict])
def test_only_gateway_errors_sampled_is_error_not_pass(judge) -> None:
    # Given an edge whose upstream is down: every sample is its own 502/504 page, headers intact
    statuses = iter((502, 502, 504, 502))
    samples = EdgeSamples("https", "votriz.test", 8443, tuple(
        HttpSample("https", path, f"https://votriz.test:8443{path}", next(statuses), GOOD, 20, "text/html")
        for path, _ in PATHS))
    verdict = judge(samples, POLICY)
    # Then nothing about the service's own responses was seen: could not verify
    assert verdict.outcome is Outcome.ERROR
    assert verdict.message == ("Every sampled response is a gateway error (statuses 502, 502, 504, 502): the "
                               "service behind the edge did not answer, so its own responses were not observed.")


def test_hsts_missing_on_the_404_only_fails_naming_it() -> None:
    verdict = hsts_verdict(https(without("strict-transport-security"), only="/does-not-exist"), POLICY)
    assert verdict.outcome is Outcome.FAIL
    assert "/does-not-exist (404) sends no Strict-Transport-Security" in verdict.message
    assert "/healthz" not in verdict.message


def test_hsts_short_without_subdomains_fails_on_both_counts() -> None:
    verdict = hsts_verdict(https(replaced("strict-transport-security", "max-age=86400")), POLICY)
    assert verdict.outcome is Outcome.FAIL
    assert "max-age=86400 (policy: ≥ 31536000)" in verdict.message
    assert "without includeSubDomains" in verdict.message


def test_hsts_garbled_max_age_fails() -> None:
    verdict = hsts_verdict(https(replaced("strict-transport-security", "max-age=forever")), POLICY)
    assert verdict.outcome is Outcome.FAIL and "without a valid max-age" in verdict.message


@pytest.mark.parametrize(("value", "parsed"), [
    ("max-age=31536000; includeSubDomains; preload", (31536000, True, True)),
    ('MAX-AGE="600";INCLUDESUBDOMAINS', (600, True, False)),
    ("includeSubDomains", (None, True, False)),
    ("max-age=-1", (None, False, False)),
])
def test_parse_hsts(value: str, parsed: tuple[int | None, bool, bool]) -> None:
    assert parse_hsts(value) == parsed


@given(st.text(max_size=80))
def test_parse_hsts_never_crashes(value: str) -> None:
    max_age, _, _ = parse_hsts(value)
    assert max_age is None or max_age >= 0


def test_security_headers_pass_and_say_the_page_lists_none() -> None:
    verdict = security_headers_verdict(https(), POLICY)
    assert verdict.outcome is Outcome.PASS
    assert verdict.details["basis"] == HEADERS_BASIS
    assert "lists no headers" in verdict.details["basis"]
    assert "page itself lists no headers" in verdict.message


def test_security_headers_missing_csp_and_frame_protection_and_banner_fail() -> None:
    headers = (*without("content-security-policy", "x-frame-options", "server"),
               ("server", "nginx/1.22.1"))
    verdict = security_headers_verdict(https(headers), POLICY)
    assert verdict.outcome is Outcome.FAIL
    assert "lacks content-security-policy" in verdict.message
    assert "no frame protection" in verdict.message
    assert "version banner (Server: nginx/1.22.1)" in verdict.message
    assert "lists no headers" in verdict.details["basis"]


def test_csp_frame_ancestors_alone_is_frame_protection() -> None:
    assert security_headers_verdict(https(without("x-frame-options")), POLICY).outcome is Outcome.PASS


def test_x_frame_options_alone_is_frame_protection_but_allow_from_is_not() -> None:
    no_ancestors = replaced("content-security-policy", "default-src 'self'")
    assert security_headers_verdict(https(no_ancestors), POLICY).outcome is Outcome.PASS
    allow_from = (*without("x-frame-options", base=no_ancestors), ("x-frame-options", "ALLOW-FROM x"))
    verdict = security_headers_verdict(https(allow_from), POLICY)
    assert verdict.outcome is Outcome.FAIL and "no frame protection" in verdict.message


def test_x_powered_by_is_a_banner() -> None:
    verdict = security_headers_verdict(https((*GOOD, ("x-powered-by", "Starlette"))), POLICY)
    assert verdict.outcome is Outcome.FAIL and "x-powered-by: Starlette" in verdict.message


def test_empty_required_header_counts_as_missing() -> None:
    verdict = security_headers_verdict(https(replaced("referrer-policy", " "), only="/api/v1/brands"), POLICY)
    assert verdict.outcome is Outcome.FAIL and "/api/v1/brands (401) lacks referrer-policy" in verdict.message


# --- transit.http_redirect_only -------------------------------------------------------------

def plain(path: str, status: int = 301, location: str | None = "auto", content_type: str = "text/html",
          body_bytes: int = 162) -> HttpSample:
    if location == "auto":
        location = f"https://votriz.test:8443{path}"
    headers = (("location", location),) if location else ()
    return HttpSample("http", path, f"http://votriz.test:8080{path}", status, headers, body_bytes,
                      content_type)


def http(*samples: HttpSample) -> EdgeSamples:
    return EdgeSamples("http", "votriz.test", 8080, samples)


def test_permanent_redirects_to_the_same_https_url_pass() -> None:
    verdict = http_redirect_verdict(http(*(plain(p) for p, _ in PATHS), plain("/x?a=1", 308)), EDGE)
    assert verdict.outcome is Outcome.PASS and "301/308 redirect" in verdict.message


def test_serving_json_over_http_fails_naming_the_url() -> None:
    verdict = http_redirect_verdict(http(plain("/"), plain("/healthz", 200, None, "application/json", 15)),
                                    EDGE)
    assert verdict.outcome is Outcome.FAIL
    assert "http://votriz.test:8080/healthz answered 200 (application/json, 15 bytes)" in verdict.message
    assert "https://votriz.test:8443/healthz" in verdict.message


@pytest.mark.parametrize(("sample", "fragment"), [
    (plain("/", 302), "answered 302"),
    (plain("/", location="http://votriz.test:8443/"), "redirects to http://votriz.test:8443/"),
    (plain("/", location="https://evil.test:8443/"), "not to https://votriz.test:8443/"),
    (plain("/", location="https://votriz.test:8443/elsewhere"), "not to"),
    (plain("/", location="https://votriz.test/"), "not to"),  # port 443, not the edge's 8443
    (plain("/", location=None), "without a Location header"),
    (plain("/", body_bytes=4096), "tiny stock page"),
    (plain("/", content_type="application/json", body_bytes=20), "tiny stock page"),
])
def test_redirect_problems_fail(sample: HttpSample, fragment: str) -> None:
    verdict = http_redirect_verdict(http(sample), EDGE)
    assert verdict.outcome is Outcome.FAIL and fragment in verdict.message


def test_default_port_redirect_without_explicit_port_passes() -> None:
    edge = EDGE.model_copy(update={"https_port": 443})
    verdict = http_redirect_verdict(http(plain("/", location="https://votriz.test/")), edge)
    assert verdict.outcome is Outcome.PASS


# --- transit.origin_not_plaintext -----------------------------------------------------------

def listener(port: int, answer: PlainHttpAnswer | None, skipped: str | None = None,
             process: str = "api", address: str = "127.0.0.1",
             reason: SkipReason | None = None) -> ProbedListener:
    return ProbedListener(ListeningSocket(process, 4242, "gunicorn", address, port, "tcp", port * 10),
                          answer, skipped, reason)


def test_no_listener_serving_plain_http_passes() -> None:
    survey = OriginSurvey(("nginx", "postgres", "api"), (
        listener(8443, PlainHttpAnswer("127.0.0.1", 8443, True, True, 400,
                                       first_line="HTTP/1.1 400 Bad Request", speaks_tls=True),
                 process="nginx"),
        listener(8080, None, "the edge's plaintext port, judged by transit.http_redirect_only",
                 process="nginx", reason=SkipReason.JUDGED_ELSEWHERE),
        listener(5432, PlainHttpAnswer("127.0.0.1", 5432, True, False, error="closed without answering"),
                 process="postgres"),
    ))
    verdict = origin_not_plaintext_verdict(survey)
    assert verdict.outcome is Outcome.PASS
    assert "None of the 2 TCP listeners" in verdict.message
    judgements = [row["judgement"] for row in verdict.details["listeners"]]
    assert judgements[0].startswith("a TLS listener") and judgements[1].startswith("not probed")


def test_api_answering_plain_http_fails_naming_process_and_port() -> None:
    survey = OriginSurvey(("api",), (
        listener(9001, PlainHttpAnswer("127.0.0.1", 9001, True, True, 404,
                                       first_line="HTTP/1.1 404 Not Found", speaks_tls=False)),
    ))
    verdict = origin_not_plaintext_verdict(survey)
    assert verdict.outcome is Outcome.FAIL
    assert "api (gunicorn, pid 4242) on 127.0.0.1:9001" in verdict.message
    assert "HTTP/1.1 404 Not Found" in verdict.message


def test_a_tls_listener_serving_200_to_plain_http_still_fails() -> None:
    survey = OriginSurvey(("api",), (
        listener(9443, PlainHttpAnswer("127.0.0.1", 9443, True, True, 200, first_line="HTTP/1.1 200 OK",
                                       speaks_tls=True)),))
    assert origin_not_plaintext_verdict(survey).outcome is Outcome.FAIL


def test_plain_redirect_to_https_is_fine() -> None:
    survey = OriginSurvey(("nginx",), (
        listener(8081, PlainHttpAnswer("127.0.0.1", 8081, True, True, 308, "https://votriz.test/",
                                       "HTTP/1.1 308 Permanent Redirect")),))
    assert origin_not_plaintext_verdict(survey).outcome is Outcome.PASS


def test_unprobed_non_loopback_listener_is_error() -> None:
    survey = OriginSurvey(("api",), (listener(9001, None, "bound to 10.0.0.5, not a loopback address; "
                                                          "the harness only targets loopback",
                                              address="10.0.0.5", reason=SkipReason.NOT_LOOPBACK),))
    verdict = origin_not_plaintext_verdict(survey)
    assert verdict.outcome is Outcome.ERROR and "10.0.0.5" in verdict.message


REDIS_ANSWER = PlainHttpAnswer("127.0.0.1", 6379, True, False, first_line="-ERR unknown command 'GET'")


@pytest.mark.parametrize("answer", [
    PlainHttpAnswer("127.0.0.1", 9001, True, False, error="no answer within 2s"),
    PlainHttpAnswer("127.0.0.1", 9001, False, False, error="Connection refused"),
])
def test_a_listener_that_gave_no_answer_is_unverified_not_fine(answer: PlainHttpAnswer) -> None:
    # Given a listener whose probe timed out or could not connect, next to one that answered
    survey = OriginSurvey(("api", "redis"), (listener(9001, answer),
                                             listener(6379, REDIS_ANSWER, process="redis")))
    verdict = origin_not_plaintext_verdict(survey)
    # Then it is unverified: ERROR naming it, never "does not speak plain HTTP"
    assert verdict.outcome is Outcome.ERROR
    assert verdict.message == ("Some listeners could not be verified: api (gunicorn, pid 4242) on "
                               f"127.0.0.1:9001: {answer.error}.")
    # And another listener serving plain HTTP still fails the check
    served = PlainHttpAnswer("127.0.0.1", 9002, True, True, 200, first_line="HTTP/1.1 200 OK")
    failing = origin_not_plaintext_verdict(OriginSurvey(("api",), (listener(9001, answer),
                                                                   listener(9002, served))))
    assert failing.outcome is Outcome.FAIL
    assert failing.message == ("The origin is reachable without TLS: api (gunicorn, pid 4242) on "
                               "127.0.0.1:9002 answers plain HTTP with 'HTTP/1.1 200 OK'.")


def test_no_listener_found_is_error() -> None:
    verdict = origin_not_plaintext_verdict(OriginSurvey(("api",), ()))
    assert verdict.outcome is Outcome.ERROR
    assert verdict.message == "No TCP listener was found for api, so nothing was probed."


def test_unreadable_proc_entries_are_named_and_make_it_error() -> None:
    survey = OriginSurvey(("api", "redis"), (listener(6379, REDIS_ANSWER, process="redis"),),
                          ("/proc/4243/net/tcp: Permission denied",))
    verdict = origin_not_plaintext_verdict(survey)
    assert verdict.outcome is Outcome.ERROR
    assert verdict.message == ("Some of the processes' sockets could not be read, so a listener may "
                               "have been missed: /proc/4243/net/tcp: Permission denied.")


def test_a_skipped_listener_without_a_typed_reason_is_unverified() -> None:
    survey = OriginSurvey(("api",), (listener(9001, None, "judged elsewhere, says the text"),))
    verdict = origin_not_plaintext_verdict(survey)
    assert verdict.outcome is Outcome.ERROR
    assert "127.0.0.1:9001: judged elsewhere, says the text" in verdict.message


def test_proc_entries_that_cannot_be_read_are_surfaced_not_skipped(tmp_path: Path) -> None:
    # Given a fake /proc where pid 77 holds a socket but its tcp table cannot be read
    from harness.probes.listeners import scan_listeners
    from harness.profile import Process

    proc = tmp_path / "proc"
    (proc / "77" / "fd").mkdir(parents=True)
    (proc / "77" / "fd" / "3").symlink_to("socket:[4321]")
    (proc / "77" / "net" / "tcp").mkdir(parents=True)  # a directory: reading it fails
    (proc / "77" / "comm").write_text("gunicorn\n")
    pid_file = tmp_path / "api.pid"
    pid_file.write_text("77\n")
    # When its listeners are read
    scan = scan_listeners([Process(name="api", pid_file=pid_file, include_children=False)], proc)
    # Then nothing is found, and what could not be read is said
    assert scan.sockets == ()
    assert scan.unreadable == ("/proc/77/net/tcp: Is a directory",)


# --- transit.outbound_https -----------------------------------------------------------------

STEPS = (ExerciseStep("POST /brands/1/captions", 201, "LLM (Anthropic)"),
         ExerciseStep("POST /recovery/request", 202, "Resend"))


def exercise(*captured: CapturedRequest, removed: bool = True) -> OutboundExercise:
    return OutboundExercise(10, STEPS, captured, 0.3, removed, None if removed else "DELETE /account: 500")


LLM_TLS = CapturedRequest(11, "tls", "POST", "/anthropic/v1/messages", "127.0.0.1:9443")
MAIL_TLS = CapturedRequest(12, "tls", "POST", "/resend/emails", "127.0.0.1:9443")


def test_both_upstreams_over_tls_pass() -> None:
    verdict = outbound_https_verdict(exercise(LLM_TLS, MAIL_TLS))
    assert verdict.outcome is Outcome.PASS
    assert "LLM (Anthropic) and Resend calls arrived over TLS" in verdict.message


@pytest.mark.parametrize(("captured", "upstream"), [
    ((dataclasses.replace(LLM_TLS, listener="plaintext"), MAIL_TLS), "LLM (Anthropic)"),
    ((LLM_TLS, dataclasses.replace(MAIL_TLS, listener="plaintext")), "Resend"),
])
def test_a_plaintext_upstream_fails_naming_it(captured: tuple[CapturedRequest, ...], upstream: str) -> None:
    verdict = outbound_https_verdict(exercise(*captured))
    assert verdict.outcome is Outcome.FAIL
    assert f"the {upstream} call" in verdict.message and "plaintext listener" in verdict.message


def test_anything_on_the_decoy_fails() -> None:
    stray = CapturedRequest(13, "plaintext", "GET", "/platforms/tiktok/me", "x")
    verdict = outbound_https_verdict(exercise(LLM_TLS, MAIL_TLS, stray))
    assert verdict.outcome is Outcome.FAIL and "/platforms/tiktok/me" in verdict.message


def test_an_upstream_never_seen_is_error() -> None:
    verdict = outbound_https_verdict(exercise(LLM_TLS))
    assert verdict.outcome is Outcome.ERROR and "Resend call never reached the fakes" in verdict.message


def test_canary_left_behind_is_said() -> None:
    verdict = outbound_https_verdict(exercise(LLM_TLS, MAIL_TLS, removed=False))
    assert verdict.outcome is Outcome.PASS
    assert "could not be removed: DELETE /account: 500" in verdict.message


# --- The checks' own early endings (no I/O before them) -------------------------------------

def conclude(check: object, tmp_path: Path, **fixtures: object) -> Verdict:
    recorder = EvidenceRecorder("transit.x", tmp_path, KnownSecrets())
    with pytest.raises(CheckOutcome) as raised:
        check(evidence=recorder, policy=POLICY, **fixtures)  # type: ignore[operator]
    return raised.value.verdict


def profile(**changes: object) -> TargetProfile:
    data: dict[str, object] = {"name": "t", "backend": "local",
                               "edge": {"host": "votriz.test", "address": "127.0.0.1"}}
    data.update(changes)
    return TargetProfile.model_validate(data)


def test_no_http_port_makes_the_redirect_check_manual(tmp_path: Path) -> None:
    # Given a profile that names no plaintext port at the edge
    verdict = conclude(check_http_redirect_only, tmp_path,
                       profile=profile(edge={"host": "votriz.test", "http_port": None}))
    # Then nothing was observed: a human confirms port 80, never NOT_APPLICABLE or PASS
    assert verdict.outcome is Outcome.MANUAL
    assert verdict.message == (
        "The profile declares no plaintext port at the edge (edge.http_port), so no plain-HTTP "
        "answer was observed. By hand: confirm port 80 of votriz.test is closed or redirects every "
        "path (301/308) to https://votriz.test/ on the same path, e.g. with curl -sI "
        "http://votriz.test/.")


@pytest.mark.parametrize("backend", ["docker", "remote"])
def test_origin_listeners_are_manual_when_nothing_says_where_they_are(backend: str, tmp_path: Path) -> None:
    # Given a docker profile without its [docker] project, or a remote host: the promise
    # still applies, the harness just cannot see the listeners -> a human attests, never N/A
    verdict = conclude(check_origin_not_plaintext, tmp_path, profile=profile(backend=backend))
    assert verdict.outcome is Outcome.MANUAL
    assert f"backend {backend!r}" in verdict.message and "ss -ltnp" in verdict.message


def test_outbound_without_capture_is_manual_with_what_to_attest(tmp_path: Path) -> None:
    verdict = conclude(check_outbound_https, tmp_path, profile=profile(api={}),
                       known_secrets=KnownSecrets())
    assert verdict.outcome is Outcome.MANUAL
    assert "Attest that the API calls the LLM provider (Anthropic) and Resend only over https://" \
        in verdict.message


def test_outbound_without_canaries_is_manual(tmp_path: Path) -> None:
    verdict = conclude(check_outbound_https, tmp_path, known_secrets=KnownSecrets(),
                       profile=profile(api={"canaries": False}, capture={"url": "https://127.0.0.1:9"}))
    assert verdict.outcome is Outcome.MANUAL and "api.canaries" in verdict.message


def test_every_check_claims_what_the_catalogue_maps_to_it() -> None:
    from harness.claims import load_catalogue

    catalogue = load_catalogue()
    for name, check in [(n, getattr(transit, n)) for n in dir(transit) if n.startswith("check_")]:
        check_id = f"transit.{name.removeprefix('check_')}"
        marked = {c for m in check.pytestmark if m.name == "claims" for c in m.args}
        mapped = {claim.id for claim in catalogue.claim if check_id in claim.checks}
        assert marked == mapped, check_id
