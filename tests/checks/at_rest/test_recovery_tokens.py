"""at_rest.recovery_tokens on hand-made observations: every rule on both sides, outcome and message."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from verdict_asserts import assert_verdict

from checks.at_rest.recovery_tokens import recovery_tokens_verdict, tokens_without_canary_verdict
from harness.outcomes import Outcome
from harness.probes.mfa_codes import RecoveryObservation, RowGroup, RuleBreaches, TokenRowsAsFound

CLEAN = TokenRowsAsFound(users=2, rows=4, unused=3, live=2, costs={12: 4}, min_cost=10,
                         max_lifetime_s=900)


def _recovery(**changes: object) -> RecoveryObservation:
    base = dict(mail_received=True, in_request_answer=False, row_found=True, row_scheme="bcrypt",
                row_match="match", row_is_token=False, confirm_first=200, confirm_second=400,
                as_found=CLEAN)
    base.update(changes)
    return RecoveryObservation(**base)  # type: ignore[arg-type]


def _found(**changes: Any) -> RecoveryObservation:
    return _recovery(as_found=replace(CLEAN, **changes))


def _one(user: int, *rows: int) -> RuleBreaches:
    return RuleBreaches(1, len(rows), (RowGroup((user,), rows, len(rows)),))


def test_recovery_pass() -> None:
    assert_verdict(recovery_tokens_verdict(_recovery()), Outcome.PASS, starts=(
        "As found, the 4 recovery-token rows (2 live) of 2 users are bcrypt at cost 10 or more "
        "(cost 12: 4), no hash string is stored twice, none is valid for longer than 900 s, and "
        "none was used before it was made."), says=["worked once (HTTP 200) then was refused (HTTP 400)"])


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


def test_rows_as_found_fail_even_without_mail() -> None:
    verdict = recovery_tokens_verdict(replace(_found(long_lived=_one(3, 31)),
                                              mail_received=False))
    assert verdict.outcome is Outcome.FAIL
    assert verdict.message == (
        "MFA recovery tokens break the promise: 1 recovery token valid for longer than 900 s "
        "after it was made (expires_at - created_at): user 3 (row 31).")


def test_fail_on_weak_duplicate_and_used_before_made_rows() -> None:
    verdict = recovery_tokens_verdict(_found(
        weak=_one(2, 21), weak_kinds={"plaintext_like": 1},
        duplicates=RuleBreaches(1, 2, (RowGroup((2, 4), (22, 40), 2),)),
        used_before_issue=_one(4, 41)))
    assert verdict.outcome is Outcome.FAIL
    assert "1 recovery-token row of 1 user not bcrypt at cost 10 or more (plaintext_like 1): " \
           "user 2 (row 21)" in verdict.message
    assert "2 recovery-token rows store a hash string another row stores too" in verdict.message
    assert "users 2, 4 (rows 22, 40)" in verdict.message
    assert "1 recovery token used before it was made (used_at < created_at): user 4 (row 41)" \
        in verdict.message


def test_error_when_the_rows_cannot_be_read_as_found() -> None:
    verdict = recovery_tokens_verdict(_found(unreadable="the auditor role cannot read "
                                                        "recovery_tokens: permission denied"))
    assert verdict.outcome is Outcome.ERROR
    assert "could not be judged as found" in verdict.message


def test_without_a_canary() -> None:
    reason = "the profile has no [capture] section to read the canary's recovery mail from"
    assert tokens_without_canary_verdict(CLEAN, reason).outcome is Outcome.MANUAL
    assert tokens_without_canary_verdict(replace(CLEAN, long_lived=_one(1, 2)), reason).outcome \
        is Outcome.FAIL
    assert tokens_without_canary_verdict(replace(CLEAN, unreadable="x"), reason).outcome \
        is Outcome.ERROR
