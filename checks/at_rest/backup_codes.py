"""at_rest.backup_codes: ten one-time MFA backup codes, shown once, stored as bcrypt.

The path (every user's code rows as found before the audit acts, then the canary's codes;
the rows alone where no canary may be made) and the rules every kind of MFA row keeps are
shared with ``at_rest.recovery_tokens`` (:mod:`harness.mfa_check_entry`); the codes' own
rules (one set of ten a user, never rewritten) and the canary's codes are judged here.
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.canaries import BACKUP_CODES_PROMISED, canary_refused
from harness.details import counts, plain, plural
from harness.evidence import EvidenceRecorder
from harness.formats.bcrypt_hash import HashScheme
from harness.mfa_check_entry import (
    CODE_ROWS,
    as_found_problems,
    as_found_sentence,
    conclude_mfa_check,
    followed_verdict,
    rows_alone_verdict,
)
from harness.outcomes import Verdict
from harness.policy import Policy
from harness.probes.mfa_codes import BackupCodesObservation, CodeRowsAsFound, observe_backup_codes
from harness.profile import TargetProfile
from harness.redaction import KnownSecrets


def codes_as_found_problems(found: CodeRowsAsFound) -> list[str]:
    """What the stored code rows of every user show against the promise (ids only)."""
    sets = []
    if found.oversized.groups:
        named = "; ".join(f"user {g.users[0]} ({g.row_count} rows from "
                          f"{plural(g.issues, 'issue')})" for g in found.oversized.examples)
        more = found.oversized.groups - len(found.oversized.examples)
        sets.append(f"{plural(found.oversized.groups, 'user')} hold more than the "
                    f"{found.set_size} codes the service issues at once, or codes of more "
                    f"than one issue: {named}" + (f"; and {more} more" if more else ""))
    if found.rewritten.groups:
        sets.append(f"{plural(found.rewritten.rows, 'unused code row')} rewritten after "
                    "issue (PostgreSQL's xmin is not its issue's transaction: a redeemed code "
                    f"marked unused again, or a row copied in): {found.rewritten.named()}")
    return as_found_problems(CODE_ROWS, found, sets)


def _as_found_sentence(found: CodeRowsAsFound) -> str:
    return as_found_sentence(CODE_ROWS, found, f"{found.unused} unused",
                             f"no user holds more than {found.set_size} codes or codes of two "
                             "issues, no unused row was rewritten after its issue (xmin)")


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
    return followed_verdict(CODE_ROWS, obs.as_found, _as_found_sentence(obs.as_found), canary, details)


def codes_without_canary_verdict(found: CodeRowsAsFound, reason: str) -> Verdict:
    """Every user's stored codes as found, when no canary can follow a code: FAIL on what
    they show, else MANUAL for what only a canary (or a person) can see."""
    return rows_alone_verdict(CODE_ROWS, found, codes_as_found_problems(found), _as_found_sentence(found),
                              reason)


@pytest.mark.claims("REST-MFA-BACKUP-CODES")
@pytest.mark.access("api", "database")
def check_backup_codes(request: pytest.FixtureRequest, profile: TargetProfile, policy: Policy,
                       known_secrets: KnownSecrets, evidence: EvidenceRecorder) -> None:
    conclude_mfa_check(request, profile, policy, known_secrets, evidence, CODE_ROWS,
                       canary_refused(profile), codes_without_canary_verdict, observe_backup_codes,
                       backup_codes_verdict)
