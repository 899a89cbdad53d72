"""at_rest.recovery_tokens: the MFA recovery token is mailed only, stored as bcrypt,
and works once.

Followed through the canary account (``harness/probes/mfa_codes.py``).
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.details import plain
from harness.evidence import EvidenceRecorder
from harness.formats.bcrypt_hash import HashMatch, HashScheme
from harness.outcomes import Verdict
from harness.policy import Policy
from harness.probes.canary_account import canary_for_check, canary_unavailable
from harness.probes.mfa_codes import RecoveryObservation, observe_recovery
from harness.profile import TargetProfile
from harness.redaction import KnownSecrets


def recovery_tokens_verdict(obs: RecoveryObservation) -> Verdict:
    """The token is only in the mail, stored as bcrypt, and works exactly once."""
    details: dict[str, Any] = plain(obs)
    if not obs.mail_received:
        return Verdict.error("No recovery mail with a token reached the canary's inbox, so "
                             "the token could not be followed.", **details)
    problems = []
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
        problems.append(f"the mailed token was refused at first use (HTTP {obs.confirm_first})")
    elif obs.confirm_second < 400:
        problems.append(f"the token worked a second time (HTTP {obs.confirm_second}): it is not "
                        "one-time")
    if problems:
        return Verdict.failed("MFA recovery tokens break the promise: " + "; ".join(problems)
                              + ".", **details)
    return Verdict.passed(
        "The recovery token reached the canary only in the mail link, is stored as a bcrypt hash "
        "that the mailed token verifies (1 bcrypt verification), and worked once "
        f"(HTTP {obs.confirm_first}) then was refused (HTTP {obs.confirm_second}).", **details)


@pytest.mark.claims("REST-MFA-RECOVERY-TOKENS")
def check_recovery_tokens(request: pytest.FixtureRequest, profile: TargetProfile, policy: Policy,
                          known_secrets: KnownSecrets, evidence: EvidenceRecorder) -> None:
    reason = canary_unavailable(profile) or (
        "the profile names no database" if profile.database is None else None)
    if reason:
        evidence.manual(f"Recovery tokens can only be followed with a canary account, and "
                        f"{reason}. By hand: request a recovery mail for a test account, check "
                        "the token appears only in the mail, that recovery_tokens stores a bcrypt "
                        "hash the token verifies, and that the link works once only.")
    session = canary_for_check(request, profile)
    assert session is not None
    verdict = recovery_tokens_verdict(observe_recovery(session, profile, policy, known_secrets))
    evidence.attach("recovery-tokens", verdict.details)
    evidence.conclude(verdict)
