"""transit.outbound_https on hand-made captures, then on the reference service."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from checks.transit.outbound_https import check_outbound_https, outbound_https_verdict
from harness.outcomes import Outcome
from harness.probes.outbound import CapturedRequest, ExerciseStep, OutboundExercise
from harness.redaction import KnownSecrets

from .conftest import conclude, integration_tests, profile

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


# --- Against the real reference service -----------------------------------------------------

test_clean_reference_service_passes, test_fault_fails_the_check = integration_tests("transit.outbound_https", {
    "llm-plaintext": "the LLM (Anthropic) call",
    "resend-plaintext": "the Resend call",
})
