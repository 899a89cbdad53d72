"""at_rest.backup_codes on hand-made observations: both sides, outcome and message."""

from __future__ import annotations

from checks.at_rest.backup_codes import backup_codes_verdict
from harness.formats.bcrypt_hash import CodeMatching
from harness.outcomes import Outcome
from harness.probes.mfa_codes import BackupCodesObservation


def _codes(**changes: object) -> BackupCodesObservation:
    base = dict(codes_returned=10, shown_again=(), rows=10, row_schemes={"bcrypt": 10},
                matching=CodeMatching(tuple((i, 100 + i) for i in range(1, 11)), (), (), 10),
                redeem_first=200, redeem_second=401)
    base.update(changes)
    return BackupCodesObservation(**base)  # type: ignore[arg-type]


def test_backup_codes_pass() -> None:
    verdict = backup_codes_verdict(_codes())
    assert verdict.outcome is Outcome.PASS
    assert "each verified by exactly one code (10 bcrypt verifications)" in verdict.message


def test_backup_codes_fail_when_reusable() -> None:
    verdict = backup_codes_verdict(_codes(redeem_second=200))
    assert verdict.outcome is Outcome.FAIL
    assert "a used code was accepted again (HTTP 200): codes are not one-time" in verdict.message


def test_backup_codes_fail_when_shown_again() -> None:
    verdict = backup_codes_verdict(_codes(shown_again=("code 1", "code 2")))
    assert verdict.outcome is Outcome.FAIL
    assert "GET /mfa returned 2 of the backup codes again" in verdict.message
