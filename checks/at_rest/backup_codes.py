"""at_rest.backup_codes: ten one-time MFA backup codes, shown once, stored as bcrypt.

Followed through the canary account (``harness/probes/mfa_codes.py``).
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.canaries import BACKUP_CODES_PROMISED
from harness.details import counts, plain
from harness.evidence import EvidenceRecorder
from harness.formats.bcrypt_hash import HashScheme
from harness.outcomes import Verdict
from harness.policy import Policy
from harness.probes.canary_account import canary_for_check, canary_unavailable
from harness.probes.mfa_codes import BackupCodesObservation, observe_backup_codes
from harness.profile import TargetProfile
from harness.redaction import KnownSecrets


def backup_codes_verdict(obs: BackupCodesObservation) -> Verdict:
    """Ten codes once, never shown again, one bcrypt row per code, each code usable once."""
    details: dict[str, Any] = plain(obs)
    problems = []
    if obs.codes_returned != BACKUP_CODES_PROMISED:
        problems.append(f"setup returned {obs.codes_returned} codes, not "
                        f"{BACKUP_CODES_PROMISED}")
    if obs.shown_again:
        problems.append(f"GET /mfa returned {len(obs.shown_again)} of the backup codes again "
                        "(the server did not forget them)")
    not_bcrypt = obs.rows - obs.row_schemes.get(HashScheme.BCRYPT.value, 0)
    if not_bcrypt:
        problems.append(f"{not_bcrypt} of the canary's {obs.rows} code rows are not bcrypt "
                        f"({counts({k: v for k, v in obs.row_schemes.items() if k != 'bcrypt'})})")
    if obs.rows != obs.codes_returned:
        problems.append(f"the canary has {obs.rows} code rows for {obs.codes_returned} codes")
    if obs.matching.unmatched_codes:
        problems.append(f"codes {', '.join(map(str, obs.matching.unmatched_codes))} match no "
                        "stored bcrypt hash of their own")
    if obs.redeem_first != 200:
        problems.append(f"a fresh code was refused (HTTP {obs.redeem_first})")
    elif obs.redeem_second < 400:
        problems.append(f"a used code was accepted again (HTTP {obs.redeem_second}): codes are "
                        "not one-time")
    if problems:
        return Verdict.failed("MFA backup codes break the promise: " + "; ".join(problems) + ".",
                              **details)
    return Verdict.passed(
        f"Setup returned {obs.codes_returned} codes, GET /mfa shows none of them, the canary has "
        f"{obs.rows} bcrypt rows each verified by exactly one code "
        f"({obs.matching.verifications} bcrypt verifications), and a code worked once "
        f"(HTTP {obs.redeem_first}) then was refused (HTTP {obs.redeem_second}).", **details)


@pytest.mark.claims("REST-MFA-BACKUP-CODES")
def check_backup_codes(request: pytest.FixtureRequest, profile: TargetProfile, policy: Policy,
                       known_secrets: KnownSecrets, evidence: EvidenceRecorder) -> None:
    reason = canary_unavailable(profile) or (
        "the profile names no database" if profile.database is None else None)
    if reason:
        evidence.manual(f"Backup codes can only be followed with a canary account, and {reason}. "
                        "By hand: set up MFA on a test account, check GET /api/v1/mfa never shows "
                        "the codes, that mfa_backup_codes holds one bcrypt hash per code, and "
                        "that a code works once only.")
    session = canary_for_check(request, profile)
    assert session is not None
    verdict = backup_codes_verdict(observe_backup_codes(session, profile, policy, known_secrets))
    evidence.attach("backup-codes", verdict.details)
    evidence.conclude(verdict)
