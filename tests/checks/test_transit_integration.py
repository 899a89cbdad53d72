"""The in-transit checks against the real reference service: PASS when clean, FAIL per fault.

Each check function is called as the plugin would call it (its fixtures' values
computed by the same probes, a real EvidenceRecorder), and its verdict is read
from the recorder or from the CheckOutcome it raised.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from checks import transit
from harness.evidence import EvidenceRecorder
from harness.outcomes import CheckOutcome, Outcome, Verdict
from harness.policy import Policy, load_policy
from harness.probes.http import fetch_samples
from harness.probes.tls import scan_tls
from harness.profile import TargetProfile, load_profile
from harness.redaction import KnownSecrets
from system_under_test.faults import FAULTS

pytestmark = pytest.mark.integration

CHECKS: dict[str, Callable[..., None]] = {
    f"transit.{name.removeprefix('check_')}": getattr(transit, name)
    for name in dir(transit) if name.startswith("check_")
}
TRANSIT_FAULTS = sorted(name for name, fault in FAULTS.items()
                        if any(check.startswith("transit.") for check in fault.checks))


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


def test_every_transit_fault_names_a_transit_check_that_claims_it() -> None:
    for name in TRANSIT_FAULTS:
        for check_id in FAULTS[name].checks:
            assert check_id in CHECKS, f"{name}: no check {check_id}"
            assert set(FAULTS[name].claims) <= set(claims_of(CHECKS[check_id])), name


@pytest.mark.parametrize("check_id", sorted(CHECKS))
def test_clean_reference_service_passes(check_id: str, clean_profile: TargetProfile,
                                        tmp_path: Path) -> None:
    secrets = KnownSecrets()
    verdict, recorder = run_check(check_id, clean_profile, load_policy(), tmp_path, secrets)
    assert verdict.outcome is Outcome.PASS, verdict.message
    assert recorder.attachments, "a passing check leaves evidence"
    # Nothing the harness learned (canary password, session token) reached the evidence.
    for path in (tmp_path / check_id).iterdir():
        assert not secrets.find_in(path.read_bytes()), path.name


EXPECTED_MESSAGES = {
    "tls12-accepted": "accepts TLSv1.2",
    "hsts-missing": "sends no Strict-Transport-Security",
    "hsts-short": "max-age=86400",
    "security-headers-missing": "lacks content-security-policy",
    "cert-expiring": "expires in",
    "http-serves-content": "instead of a 301/308 redirect",
    "api-plaintext-exposed": "answers plain HTTP",
    "llm-plaintext": "the LLM (Anthropic) call",
    "resend-plaintext": "the Resend call",
}


@pytest.mark.parametrize("fault", TRANSIT_FAULTS)
def test_fault_fails_its_check(fault: str, stack_factory: Any, tmp_path: Path) -> None:
    # Given the reference service with one in-transit fault on,
    # when the checks the fault registry names run,
    with stack_factory(fault) as info:
        profile = load_profile(info.profile_path)
        verdicts = {check_id: run_check(check_id, profile, load_policy(), tmp_path)[0]
                    for check_id in FAULTS[fault].checks}
    for check_id, verdict in verdicts.items():
        # then each fails, for the claim the fault breaks, saying what is wrong.
        assert verdict.outcome is Outcome.FAIL, f"{fault}: {verdict.outcome} {verdict.message}"
        assert set(FAULTS[fault].claims) <= set(claims_of(CHECKS[check_id]))
        assert EXPECTED_MESSAGES[fault] in verdict.message, verdict.message
        if check_id == "transit.outbound_https":
            assert verdict.details["canary_removed"] is True, "the canary must be removed on FAIL too"
