"""at_rest.recovery_tokens: the MFA recovery token is mailed only, stored as bcrypt,
and works once.

Its path and the rules every kind of MFA row keeps are the backup codes'
(:mod:`harness.mfa_check_entry`), with one more reason no canary may follow a token: no
mailbox to read its mail from. The tokens' own rule (a short life) and the canary's token,
from the mail to its second use, are judged here.
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.canaries import canary_refused, recovery_mail_unavailable
from harness.details import plain, plural
from harness.evidence import EvidenceRecorder
from harness.formats.bcrypt_hash import HashMatch, HashScheme
from harness.mfa_check_entry import (
    TOKEN_ROWS,
    as_found_problems,
    as_found_sentence,
    conclude_mfa_check,
    followed_verdict,
    rows_alone_verdict,
)
from harness.outcomes import Verdict
from harness.policy import Policy
from harness.probes.mfa_codes import RecoveryObservation, TokenRowsAsFound, observe_recovery
from harness.profile import TargetProfile
from harness.redaction import KnownSecrets


def tokens_as_found_problems(found: TokenRowsAsFound) -> list[str]:
    """What the stored token rows of every user show against the promise (ids only)."""
    lifetime = [f"{plural(found.long_lived.rows, 'recovery token')} valid for longer than "
                f"{found.max_lifetime_s} s after it was made (expires_at - created_at): "
                f"{found.long_lived.named()}"] if found.long_lived.groups else []
    return as_found_problems(TOKEN_ROWS, found, lifetime)


def _as_found_sentence(found: TokenRowsAsFound) -> str:
    return as_found_sentence(TOKEN_ROWS, found, f"{found.live} live",
                             f"none is valid for longer than {found.max_lifetime_s} s")


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
    return followed_verdict(TOKEN_ROWS, obs.as_found, _as_found_sentence(obs.as_found), canary, details)


def tokens_without_canary_verdict(found: TokenRowsAsFound, reason: str) -> Verdict:
    """Every user's stored tokens as found, when no canary can follow a token: FAIL on what
    they show, else MANUAL for what only a canary (or a person) can see."""
    return rows_alone_verdict(TOKEN_ROWS, found, tokens_as_found_problems(found), _as_found_sentence(found),
                              reason)


@pytest.mark.claims("REST-MFA-RECOVERY-TOKENS")
@pytest.mark.access("api", "database")
def check_recovery_tokens(request: pytest.FixtureRequest, profile: TargetProfile, policy: Policy,
                          known_secrets: KnownSecrets, evidence: EvidenceRecorder) -> None:
    reason = canary_refused(profile) or recovery_mail_unavailable(profile)
    conclude_mfa_check(request, profile, policy, known_secrets, evidence, TOKEN_ROWS, reason,
                       tokens_without_canary_verdict, observe_recovery, recovery_tokens_verdict)
