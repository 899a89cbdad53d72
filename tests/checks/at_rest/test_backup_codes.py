"""at_rest.backup_codes on hand-made observations: every rule on both sides, outcome and message."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from verdict_asserts import assert_verdict

from checks.at_rest.backup_codes import backup_codes_verdict, check_backup_codes, codes_without_canary_verdict
from harness.evidence import EvidenceRecorder
from harness.formats.bcrypt_hash import CodeMatching
from harness.outcomes import CheckOutcome, Outcome
from harness.policy import load_policy
from harness.probes.mfa_codes import (
    BackupCodesObservation,
    CodeRowsAsFound,
    RowGroup,
    RuleBreaches,
)
from harness.profile import parse_profile
from harness.redaction import KnownSecrets

CLEAN = CodeRowsAsFound(users=3, rows=30, unused=27, costs={12: 30}, min_cost=10, set_size=10)


def _codes(**changes: object) -> BackupCodesObservation:
    base = dict(codes_returned=10, shown_again=(), rows=10, row_schemes={"bcrypt": 10},
                matching=CodeMatching(tuple((i, 100 + i) for i in range(1, 11)), (), (), 10),
                redeem_first=200, redeem_second=401, as_found=CLEAN)
    base.update(changes)
    return BackupCodesObservation(**base)  # type: ignore[arg-type]


def _found(**changes: Any) -> BackupCodesObservation:
    return _codes(as_found=replace(CLEAN, **changes))


def _one(user: int, *rows: int, issues: int = 1) -> RuleBreaches:
    return RuleBreaches(1, len(rows), (RowGroup((user,), rows, len(rows), issues),))


def test_backup_codes_pass() -> None:
    verdict = assert_verdict(backup_codes_verdict(_codes()), Outcome.PASS, starts=(
        "As found, the 30 code rows (27 unused) of 3 users are bcrypt at cost 10 or more "
        "(cost 12: 30), no hash string is stored twice, no user holds more than 10 codes or "
        "codes of two issues, no unused row was rewritten after its issue (xmin), and none was "
        "used before it was made."), says=["each verified by exactly one code (10 bcrypt verifications)"])
    assert verdict.details["as_found"]["rows"] == 30


def test_backup_codes_fail_when_reusable() -> None:
    verdict = backup_codes_verdict(_codes(redeem_second=200))
    assert verdict.outcome is Outcome.FAIL
    assert "a used code was accepted again (HTTP 200): codes are not one-time" in verdict.message


def test_backup_codes_fail_when_shown_again() -> None:
    verdict = backup_codes_verdict(_codes(shown_again=("code 1", "code 2")))
    assert verdict.outcome is Outcome.FAIL
    assert "GET /mfa returned 2 of the backup codes again" in verdict.message


def test_fail_on_a_rewritten_unused_row() -> None:
    verdict = backup_codes_verdict(_found(rewritten=_one(7, 73)))
    assert verdict.outcome is Outcome.FAIL
    assert ("1 unused code row rewritten after issue (PostgreSQL's xmin is not its issue's "
            "transaction: a redeemed code marked unused again, or a row copied in): user 7 "
            "(row 73).") in verdict.message
    # The canary's own flow passed, and the message does not say it failed.
    assert "accepted again" not in verdict.message


def test_fail_on_duplicate_hashes_within_and_across_users() -> None:
    across = RuleBreaches(2, 5, (RowGroup((7,), (70, 80), 2), RowGroup((8, 9), (81, 91, 92), 3)))
    verdict = backup_codes_verdict(_found(duplicates=across))
    assert verdict.outcome is Outcome.FAIL
    assert ("5 code rows store a hash string another row stores too (bcrypt salts every hash, "
            "so an identical string is a copied row): user 7 (rows 70, 80); users 8, 9 "
            "(rows 81, 91, 92).") in verdict.message


def test_fail_on_more_rows_than_the_set_or_two_issues() -> None:
    oversized = RuleBreaches(12, 130, (RowGroup((7,), tuple(range(70, 81)), 11, 2),))
    verdict = backup_codes_verdict(_found(oversized=oversized))
    assert verdict.outcome is Outcome.FAIL
    assert ("12 users hold more than the 10 codes the service issues at once, or codes of more "
            "than one issue: user 7 (11 rows from 2 issues); and 11 more.") in verdict.message


def test_fail_on_weak_rows_naming_kinds_and_rows() -> None:
    verdict = backup_codes_verdict(_found(weak=_one(4, 41, 42),
                                          weak_kinds={"plaintext_like": 1, "bcrypt cost 8": 1}))
    assert verdict.outcome is Outcome.FAIL
    assert "2 code rows of 1 user not bcrypt at cost 10 or more (plaintext_like 1, bcrypt cost " \
           "8 1): user 4 (rows 41, 42)" in verdict.message


def test_fail_on_a_row_used_before_it_was_made() -> None:
    verdict = backup_codes_verdict(_found(used_before_issue=_one(5, 55)))
    assert verdict.outcome is Outcome.FAIL
    assert "1 code row used before it was made (used_at < created_at): user 5 (row 55)" \
        in verdict.message


def test_named_rows_are_bounded() -> None:
    group = RowGroup((3,), tuple(range(1, 21)), 25)
    assert group.named().endswith("19, 20 and 5 more)")


def test_error_when_the_rows_cannot_be_read_as_found() -> None:
    verdict = backup_codes_verdict(_found(unreadable="the auditor role cannot read "
                                                     "mfa_backup_codes: permission denied"))
    assert verdict.outcome is Outcome.ERROR
    assert verdict.message.startswith("The stored code rows could not be judged as found "
                                      "(the auditor role cannot read mfa_backup_codes")
    # A FAIL the canary saw stays a FAIL.
    assert backup_codes_verdict(replace(_found(unreadable="x"), redeem_second=200)).outcome \
        is Outcome.FAIL


def test_without_a_canary_rows_as_found_still_fail_or_are_manual() -> None:
    reason = "the profile does not allow canary accounts (api.canaries = false)"
    failed = codes_without_canary_verdict(replace(CLEAN, rewritten=_one(7, 73)), reason)
    assert failed.outcome is Outcome.FAIL
    manual = codes_without_canary_verdict(CLEAN, reason)
    assert manual.outcome is Outcome.MANUAL
    assert manual.message.startswith("As found, the 30 code rows")
    assert "By hand:" in manual.message
    error = codes_without_canary_verdict(replace(CLEAN, unreadable="no table"), reason)
    assert error.outcome is Outcome.ERROR


def test_without_a_database_the_check_is_manual_naming_what_to_do(tmp_path: Path) -> None:
    profile = parse_profile('name = "t"\n[edge]\nhost = "votriz.test"\n[api]\n')
    with pytest.raises(CheckOutcome) as ended:
        check_backup_codes(request=None, profile=profile, policy=load_policy(), known_secrets=KnownSecrets(),
                           evidence=EvidenceRecorder("at_rest.backup_codes", tmp_path, KnownSecrets()))
    assert_verdict(ended.value.verdict, Outcome.MANUAL, starts=(
        "Backup codes can only be judged with the service's database, and the profile names none. "
        "By hand: set up MFA on a test account, check GET /api/v1/mfa never shows the codes, that "
        "mfa_backup_codes holds one bcrypt hash per code, and that a code works once only."))
