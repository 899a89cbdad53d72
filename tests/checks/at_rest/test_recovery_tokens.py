"""at_rest.recovery_tokens on hand-made observations: both sides, outcome and message."""

from __future__ import annotations

from checks.at_rest.recovery_tokens import recovery_tokens_verdict
from harness.outcomes import Outcome
from harness.probes.mfa_codes import RecoveryObservation


def _recovery(**changes: object) -> RecoveryObservation:
    base = dict(mail_received=True, in_request_answer=False, row_found=True, row_scheme="bcrypt",
                row_match="match", row_is_token=False, confirm_first=200, confirm_second=400)
    base.update(changes)
    return RecoveryObservation(**base)  # type: ignore[arg-type]


def test_recovery_pass() -> None:
    verdict = recovery_tokens_verdict(_recovery())
    assert verdict.outcome is Outcome.PASS
    assert "worked once (HTTP 200) then was refused (HTTP 400)" in verdict.message


def test_recovery_fail_plaintext_and_reusable() -> None:
    verdict = recovery_tokens_verdict(_recovery(row_is_token=True,
                                                row_scheme="plaintext_like"))
    assert verdict.outcome is Outcome.FAIL
    assert "the stored row holds the token itself, in plaintext" in verdict.message
    verdict = recovery_tokens_verdict(_recovery(confirm_second=200))
    assert "the token worked a second time (HTTP 200): it is not one-time" in verdict.message


def test_recovery_error_without_mail() -> None:
    verdict = recovery_tokens_verdict(_recovery(mail_received=False))
    assert verdict.outcome is Outcome.ERROR
