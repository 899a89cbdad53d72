"""Shared by the in-transit checks' tests: hand-made observations, and running a check as the
plugin would (its fixtures' values computed by the same probes, a real EvidenceRecorder)."""

from __future__ import annotations

import dataclasses
import importlib
import tomllib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from harness.checkdir import CHECKS_DIR, declared_checks
from harness.evidence import EvidenceRecorder
from harness.outcomes import CheckOutcome, Outcome, Verdict
from harness.policy import Policy, load_policy
from harness.probes.http import EdgeSamples, HttpSample, PlainHttpAnswer, fetch_samples
from harness.probes.listeners import ListeningSocket, ProbedListener, SkipReason
from harness.probes.tls import CertificateObservation, TlsScan, TlsVersionProbe, scan_tls
from harness.profile import Edge, TargetProfile, load_profile
from harness.redaction import KnownSecrets
from system_under_test.faults import FAULTS

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


# --- HTTPS samples --------------------------------------------------------------------------

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


# Every sample is the edge's own 502/504 page, headers intact: its upstream is down.
GATEWAY_STATUSES = (502, 502, 504, 502)
GATEWAY_MESSAGE = ("Every sampled response is a gateway error (statuses 502, 502, 504, 502): the "
                   "service behind the edge did not answer, so its own responses were not observed.")


def gateway_errors_only() -> EdgeSamples:
    statuses = iter(GATEWAY_STATUSES)
    return EdgeSamples("https", "votriz.test", 8443, tuple(
        HttpSample("https", path, f"https://votriz.test:8443{path}", next(statuses), GOOD, 20, "text/html")
        for path, _ in PATHS))


# --- Listeners ------------------------------------------------------------------------------

def listener(port: int, answer: PlainHttpAnswer | None, skipped: str | None = None,
             process: str = "api", address: str = "127.0.0.1",
             reason: SkipReason | None = None) -> ProbedListener:
    return ProbedListener(ListeningSocket(process, 4242, "gunicorn", address, port, "tcp", port * 10),
                          answer, skipped, reason)


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


# --- Against the real reference service -----------------------------------------------------

def transit_checks() -> dict[str, Callable[..., None]]:
    """Every in-transit check function, by id."""
    found = {}
    for check_id, declared in declared_checks().items():
        if check_id.startswith("transit."):
            module = importlib.import_module(f"checks.transit.{declared.path.stem}")
            found[check_id] = getattr(module, declared.function)
    return found


CHECKS = transit_checks()
# Which checks must FAIL under each fault of the reference service: the auditor's calibration.
CALIBRATION = tomllib.loads((CHECKS_DIR.parent / "fixtures" / "calibration.toml").read_text("utf-8"))


def checks_expected_to_fail(fault: str) -> tuple[str, ...]:
    """The checks the calibration expects to FAIL with ``fault`` on."""
    return tuple(CALIBRATION["faults"].get(fault, {}).get("checks", ()))


TRANSIT_FAULTS = sorted(name for name in FAULTS
                        if any(check.startswith("transit.") for check in checks_expected_to_fail(name)))


def faults_of(check_id: str) -> list[str]:
    """The reference service's faults that break the promise ``check_id`` verifies."""
    return [name for name in TRANSIT_FAULTS if check_id in checks_expected_to_fail(name)]


def claims_of(check: Callable[..., None]) -> tuple[str, ...]:
    marks = [m for m in getattr(check, "pytestmark", []) if m.name == "claims"]
    return tuple(claim for mark in marks for claim in mark.args)


def run_check(check_id: str, profile: TargetProfile, policy: Policy, directory: Path,
              secrets: KnownSecrets | None = None) -> tuple[Verdict, EvidenceRecorder]:
    """Call one check with the values its fixtures would have; return its verdict."""
    secrets = secrets or KnownSecrets()
    recorder = EvidenceRecorder(check_id, directory / check_id, secrets)
    available: dict[str, Any] = {"profile": profile, "policy": policy, "evidence": recorder,
                                 "known_secrets": secrets}
    check = CHECKS[check_id]
    wanted = check.__code__.co_varnames[:check.__code__.co_argcount]
    if "tls_scan" in wanted:
        available["tls_scan"] = scan_tls(profile.edge, policy)
    if "https_samples" in wanted:
        available["https_samples"] = fetch_samples(profile.edge, policy, "https")
    try:
        check(**{name: available[name] for name in wanted})
    except CheckOutcome as outcome:
        return outcome.verdict, recorder
    assert recorder.verdict is not None, f"{check_id} ended without concluding"
    return recorder.verdict, recorder


@pytest.fixture(scope="module")
def clean_profile(clean_stack: Any) -> TargetProfile:
    return load_profile(clean_stack.profile_path)


def clean_service_passes(check_id: str, clean_profile: TargetProfile, tmp_path: Path) -> None:
    """The check passes on the clean reference service and leaves evidence free of secrets."""
    secrets = KnownSecrets()
    verdict, recorder = run_check(check_id, clean_profile, load_policy(), tmp_path, secrets)
    assert verdict.outcome is Outcome.PASS, verdict.message
    assert recorder.attachments, "a passing check leaves evidence"
    # Nothing the harness learned (canary password, session token) reached the evidence.
    for path in (tmp_path / check_id).iterdir():
        assert not secrets.find_in(path.read_bytes()), path.name


def fault_fails_its_checks(fault: str, expected_message: str, stack_factory: Any, tmp_path: Path) -> None:
    """With ``fault`` on, every check the fault registry names FAILs, saying ``expected_message``."""
    # Given the reference service with one in-transit fault on,
    # when the checks the fault registry names run,
    with stack_factory(fault) as info:
        profile = load_profile(info.profile_path)
        verdicts = {check_id: run_check(check_id, profile, load_policy(), tmp_path)[0]
                    for check_id in checks_expected_to_fail(fault)}
    for check_id, verdict in verdicts.items():
        # then each fails, for the claim the fault breaks, saying what is wrong.
        assert verdict.outcome is Outcome.FAIL, f"{fault}: {verdict.outcome} {verdict.message}"
        assert set(FAULTS[fault].claims) <= set(claims_of(CHECKS[check_id]))
        assert expected_message in verdict.message, verdict.message
        if check_id == "transit.outbound_https":
            assert verdict.details["canary_removed"] is True, "the canary must be removed on FAIL too"


def integration_tests(check_id: str, expected_messages: dict[str, str]) -> tuple[Callable[..., None], ...]:
    """A check's two tests on the reference service: it PASSes when clean, and FAILs with each
    fault that breaks its promise, saying ``expected_messages[fault]``."""

    @pytest.mark.integration
    def clean(clean_profile: TargetProfile, tmp_path: Path) -> None:
        clean_service_passes(check_id, clean_profile, tmp_path)

    @pytest.mark.integration
    @pytest.mark.parametrize("fault", faults_of(check_id))
    def faulty(fault: str, stack_factory: Any, tmp_path: Path) -> None:
        fault_fails_its_checks(fault, expected_messages[fault], stack_factory, tmp_path)

    return clean, faulty
