"""at_rest.password_hashes: every account password is bcrypt at the policy's cost.

The observation (``harness/probes/passwords.py``) classifies every cell of
``users.password_hash`` and checks the canary's password against its own row.
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.details import counts
from harness.evidence import EvidenceRecorder
from harness.evidence_kinds import BcryptHistogramEvidence
from harness.formats.bcrypt_hash import HashMatch, HashScheme
from harness.outcomes import Verdict
from harness.policy import Policy
from harness.probes.canary_account import canary_data_and_note
from harness.probes.passwords import PasswordObservation, observe_passwords
from harness.profile import TargetProfile
from harness.redaction import KnownSecrets


def password_hashes_unavailable(profile: TargetProfile, policy: Policy) -> Verdict | None:
    """MANUAL when the profile names no database for at_rest.password_hashes, else None."""
    if profile.database is not None:
        return None
    cost = policy.bcrypt.cost
    return Verdict.manual(
        "The profile has no [database] section, so users.password_hash cannot be read. By hand: "
        "on the service's database run `SELECT substr(password_hash, 1, 7) AS prefix, "
        "length(password_hash) AS len, count(*) FROM users GROUP BY 1, 2` and show that every "
        f"row is a 60-character bcrypt hash with work factor {cost} (prefix $2b${cost:02d}$, "
        f"$2a${cost:02d}$ or $2y${cost:02d}$), and that a test account's password verifies "
        "against its own row (`bcrypt.checkpw`).", missing=["no [database] section"])


def password_hashes_verdict(obs: PasswordObservation, policy: Policy) -> Verdict:
    """Every password hash is well-formed bcrypt at the policy's cost; the canary verifies."""
    cost = policy.bcrypt.cost
    scan = obs.scan
    details: dict[str, Any] = {"column": scan.column, "rows": scan.rows, "schemes": scan.schemes,
                               "cost_histogram": {str(k): v for k, v in sorted(scan.costs.items())},
                               "policy_cost": cost, "canary_match": obs.canary_match,
                               "canary_cost": obs.canary_cost, "bcrypt_verifications":
                               0 if obs.canary_match is None else 1,
                               "examples": list(scan.examples + scan.cost_examples),
                               "read": scan.read}
    sample = obs.sample
    if sample is not None:
        details["sampling"] = sample.evidence()
    marker = "SAMPLED (a uniform sample, not every row): " if sample is not None else ""
    problems = []
    not_bcrypt = scan.rows - scan.schemes.get(HashScheme.BCRYPT.value, 0)
    if not_bcrypt:
        others = {k: v for k, v in scan.schemes.items() if k != HashScheme.BCRYPT.value}
        problems.append(f"{not_bcrypt} of {scan.rows} password hashes are not bcrypt "
                        f"({counts(others)}; e.g. {', '.join(scan.examples[:3])})")
    wrong_cost = {c: n for c, n in scan.costs.items() if c != cost}
    if wrong_cost:
        listed = ", ".join(f"{n} at cost {c}" for c, n in sorted(wrong_cost.items()))
        problems.append(f"{sum(wrong_cost.values())} of {scan.rows} bcrypt hashes do not use "
                        f"work factor {cost} ({listed}; e.g. {', '.join(scan.cost_examples[:3])})")
    if obs.canary_match is not None and obs.canary_match != HashMatch.MATCH.value:
        problems.append(f"the canary's password does not verify against its own row "
                        f"({obs.canary_match})")
    if problems:
        of_rows = (f" Found among {sample.rows_sampled} rows of {sample.table} drawn at "
                   f"random ({sample.percent:.3g}% of each row's chance)." if sample else "")
        return Verdict.failed(f"{marker}Account passwords are not all bcrypt with work factor "
                              f"{cost}: " + "; ".join(problems) + "." + of_rows, **details)
    if scan.rows == 0:
        return Verdict.error("users.password_hash has no rows to judge.", **details)
    canary = (" The canary's password verifies against its row (1 bcrypt verification)."
              if obs.canary_match is not None else f" No canary was planted ({obs.canary_note}).")
    if sample is not None:
        return Verdict.passed(f"{sample.sentence('password hashes')} All {scan.rows} sampled "
                              f"password hashes are well-formed bcrypt with work factor "
                              f"{cost}.{canary}", **details)
    return Verdict.passed(f"All {scan.rows} password hashes are well-formed bcrypt with work "
                          f"factor {cost}.{canary}", **details)


@pytest.mark.claims("REST-PASSWORDS-BCRYPT12")
@pytest.mark.access("api", "database")
def check_password_hashes(request: pytest.FixtureRequest, profile: TargetProfile, policy: Policy,
                          known_secrets: KnownSecrets, evidence: EvidenceRecorder) -> None:
    unavailable = password_hashes_unavailable(profile, policy)
    if unavailable is not None:
        evidence.conclude(unavailable)
    canary, note = canary_data_and_note(request, profile)
    obs = observe_passwords(profile, policy, known_secrets, canary, note)
    verdict = password_hashes_verdict(obs, policy)
    evidence.attach("password-hashes", BcryptHistogramEvidence.model_validate(verdict.details))
    evidence.conclude(verdict)
