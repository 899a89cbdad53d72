"""at_rest.recovery_tokens: the MFA recovery token is mailed only, stored as bcrypt,
and works once.

Judged on every user's stored token rows as found (before the audit acts), then
followed through the canary account (``harness/probes/mfa_codes.py``).
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.canaries import canary_refused, recovery_mail_unavailable
from harness.details import plain, plural
from harness.evidence import EvidenceRecorder
from harness.formats.bcrypt_hash import HashMatch, HashScheme
from harness.outcomes import Verdict
from harness.policy import Policy
from harness.probes.canary_account import CANARY_FIXTURE
from harness.probes.database import open_database
from harness.probes.mfa_codes import (
    RecoveryObservation,
    TokenRowsAsFound,
    observe_recovery,
    observe_tokens_as_found,
    without_canary_verdict,
)
from harness.profile import TargetProfile
from harness.redaction import KnownSecrets

_BY_HAND = ("By hand: request a recovery mail for a test account, check the token appears only "
            "in the mail, that recovery_tokens stores a bcrypt hash the token verifies, and that "
            "the link works once only.")


def tokens_as_found_problems(found: TokenRowsAsFound) -> list[str]:
    """What the stored token rows of every user show against the promise (ids only)."""
    problems = found.weak_or_copied("recovery-token row")
    if found.long_lived.groups:
        problems.append(f"{plural(found.long_lived.rows, 'recovery token')} valid for longer "
                        f"than {found.max_lifetime_s} s after it was made (expires_at - "
                        f"created_at): {found.long_lived.named()}")
    return problems + found.used_before_made("recovery token")


def _as_found_sentence(found: TokenRowsAsFound) -> str:
    return (f"As found, the {found.rows} recovery-token rows ({found.live} live) of "
            f"{plural(found.users, 'user')} are bcrypt at cost {found.min_cost} or more "
            f"({found.costs_named()}), no hash string is stored twice, none is valid for longer than "
            f"{found.max_lifetime_s} s, and none was used before it was made.")


def recovery_tokens_verdict(obs: RecoveryObservation) -> Verdict:
    """Every user's stored tokens keep the rules; the canary's token is only in the mail,
    stored as bcrypt, and works exactly once."""
    details: dict[str, Any] = plain(obs)
    problems = tokens_as_found_problems(obs.as_found)
    if obs.mail_received:
        if obs.in_request_answer:
            problems.append("the token was also in the API's answer to the request, not only in "
                            "the mail")
        if not obs.row_found:
            problems.append("no recovery_tokens row was stored for the request")
        elif obs.row_is_token:
            problems.append("the stored row holds the token itself, in plaintext")
        elif obs.row_scheme != HashScheme.BCRYPT.value:
            problems.append(f"the stored row is not a bcrypt hash ({obs.row_scheme})")
        elif obs.row_match != HashMatch.MATCH.value:
            problems.append(f"the mailed token does not verify against the stored hash "
                            f"({obs.row_match})")
        if obs.confirm_first != 200:
            problems.append(f"the mailed token was refused at first use "
                            f"(HTTP {obs.confirm_first})")
        elif obs.confirm_second < 400:
            problems.append(f"the token worked a second time (HTTP {obs.confirm_second}): it "
                            "is not one-time")
    if problems:
        return Verdict.failed("MFA recovery tokens break the promise: " + "; ".join(problems)
                              + ".", **details)
    if not obs.mail_received:
        return Verdict.error("No recovery mail with a token reached the canary's inbox, so "
                             "the token could not be followed.", **details)
    canary = ("The recovery token reached the canary only in the mail link, is stored as a "
              "bcrypt hash that the mailed token verifies (1 bcrypt verification), and worked "
              f"once (HTTP {obs.confirm_first}) then was refused (HTTP {obs.confirm_second}).")
    if obs.as_found.unreadable:
        return Verdict.error(f"The stored recovery-token rows could not be judged as found "
                             f"({obs.as_found.unreadable}). {canary}", **details)
    return Verdict.passed(f"{_as_found_sentence(obs.as_found)} {canary}", **details)


def tokens_without_canary_verdict(found: TokenRowsAsFound, reason: str) -> Verdict:
    """Every user's stored tokens as found, when no canary can follow a token: FAIL on what
    they show, else MANUAL for what only a canary (or a person) can see."""
    return without_canary_verdict(found, tokens_as_found_problems(found), _as_found_sentence(found),
                                  reason, broken="MFA recovery tokens", rows="recovery-token rows",
                                  secret="token", follow="That a token is only in the mail and works once",
                                  by_hand=_BY_HAND)


@pytest.mark.claims("REST-MFA-RECOVERY-TOKENS")
@pytest.mark.access("api", "database")
def check_recovery_tokens(request: pytest.FixtureRequest, profile: TargetProfile, policy: Policy,
                          known_secrets: KnownSecrets, evidence: EvidenceRecorder) -> None:
    if profile.database is None:
        evidence.manual("Recovery tokens can only be judged with the service's database, and "
                        "the profile names none. " + _BY_HAND)
    reason = canary_refused(profile) or recovery_mail_unavailable(profile)
    if reason:
        with open_database(profile, policy, known_secrets) as db:
            verdict = tokens_without_canary_verdict(observe_tokens_as_found(db, policy), reason)
    else:
        # Every user's rows as found, read before the canary enrolled (the fixture runs first).
        as_found = request.getfixturevalue("mfa_rows_before_canary").tokens_or_raise()
        session = request.getfixturevalue(CANARY_FIXTURE)
        verdict = recovery_tokens_verdict(observe_recovery(session, profile, policy,
                                                           known_secrets, as_found))
    evidence.attach("recovery-tokens", verdict.details)
    evidence.conclude(verdict)
