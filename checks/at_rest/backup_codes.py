"""at_rest.backup_codes: ten one-time MFA backup codes, shown once, stored as bcrypt.

Judged on every user's stored code rows as found (before the audit acts), then
followed through the canary account (``harness/probes/mfa_codes.py``).
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.canaries import BACKUP_CODES_PROMISED, canary_refused
from harness.details import counts, plain, plural
from harness.evidence import EvidenceRecorder
from harness.formats.bcrypt_hash import HashScheme
from harness.outcomes import Verdict
from harness.policy import Policy
from harness.probes.canary_account import CANARY_FIXTURE
from harness.probes.database import open_database
from harness.probes.mfa_codes import (
    BackupCodesObservation,
    CodeRowsAsFound,
    observe_backup_codes,
    observe_codes_as_found,
    without_canary_verdict,
)
from harness.profile import TargetProfile
from harness.redaction import KnownSecrets

_BY_HAND = ("By hand: set up MFA on a test account, check GET /api/v1/mfa never shows the codes, "
            "that mfa_backup_codes holds one bcrypt hash per code, and that a code works once "
            "only.")


def codes_as_found_problems(found: CodeRowsAsFound) -> list[str]:
    """What the stored code rows of every user show against the promise (ids only)."""
    problems = found.weak_or_copied("code row")
    if found.oversized.groups:
        named = "; ".join(f"user {g.users[0]} ({g.row_count} rows from "
                          f"{plural(g.issues, 'issue')})" for g in found.oversized.examples)
        more = found.oversized.groups - len(found.oversized.examples)
        problems.append(f"{plural(found.oversized.groups, 'user')} hold more than the "
                        f"{found.set_size} codes the service issues at once, or codes of more "
                        f"than one issue: {named}" + (f"; and {more} more" if more else ""))
    if found.rewritten.groups:
        problems.append(f"{plural(found.rewritten.rows, 'unused code row')} rewritten after "
                        "issue (PostgreSQL's xmin is not its issue's transaction: a redeemed code "
                        f"marked unused again, or a row copied in): {found.rewritten.named()}")
    return problems + found.used_before_made("code row")


def _as_found_sentence(found: CodeRowsAsFound) -> str:
    return (f"As found, the {found.rows} code rows ({found.unused} unused) of "
            f"{plural(found.users, 'user')} are bcrypt at cost {found.min_cost} or more "
            f"({found.costs_named()}), no hash string is stored twice, no user holds more than "
            f"{found.set_size} codes or codes of two issues, no unused row was rewritten after "
            "its issue (xmin), and none was used before it was made.")


def backup_codes_verdict(obs: BackupCodesObservation) -> Verdict:
    """Every user's stored codes keep the rules; ten codes once, never shown again, one
    bcrypt row per code, each code usable once."""
    details: dict[str, Any] = plain(obs)
    problems = codes_as_found_problems(obs.as_found)
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
    canary = (f"Setup returned {obs.codes_returned} codes, GET /mfa shows none of them, the "
              f"canary has {obs.rows} bcrypt rows each verified by exactly one code "
              f"({obs.matching.verifications} bcrypt verifications), and a code worked once "
              f"(HTTP {obs.redeem_first}) then was refused (HTTP {obs.redeem_second}).")
    if obs.as_found.unreadable:
        return Verdict.error(f"The stored code rows could not be judged as found "
                             f"({obs.as_found.unreadable}). {canary}", **details)
    return Verdict.passed(f"{_as_found_sentence(obs.as_found)} {canary}", **details)


def codes_without_canary_verdict(found: CodeRowsAsFound, reason: str) -> Verdict:
    """Every user's stored codes as found, when no canary can follow a code: FAIL on what
    they show, else MANUAL for what only a canary (or a person) can see."""
    return without_canary_verdict(found, codes_as_found_problems(found), _as_found_sentence(found), reason,
                                  broken="MFA backup codes", rows="code rows", secret="code",
                                  follow="That codes are shown once and work once", by_hand=_BY_HAND)


@pytest.mark.claims("REST-MFA-BACKUP-CODES")
@pytest.mark.access("api", "database")
def check_backup_codes(request: pytest.FixtureRequest, profile: TargetProfile, policy: Policy,
                       known_secrets: KnownSecrets, evidence: EvidenceRecorder) -> None:
    if profile.database is None:
        evidence.manual("Backup codes can only be judged with the service's database, and the "
                        "profile names none. " + _BY_HAND)
    reason = canary_refused(profile)
    if reason:
        with open_database(profile, policy, known_secrets) as db:
            verdict = codes_without_canary_verdict(observe_codes_as_found(db, policy), reason)
    else:
        # Every user's rows as found, read before the canary enrolled (the fixture runs first).
        as_found = request.getfixturevalue("mfa_rows_before_canary").codes_or_raise()
        session = request.getfixturevalue(CANARY_FIXTURE)
        verdict = backup_codes_verdict(observe_backup_codes(session, profile, policy,
                                                            known_secrets, as_found))
    evidence.attach("backup-codes", verdict.details)
    evidence.conclude(verdict)
