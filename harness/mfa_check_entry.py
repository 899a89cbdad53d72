"""The entry the two MFA-secret checks share (``at_rest.backup_codes``,
``at_rest.recovery_tokens``): every user's stored rows judged as found, then one secret
followed through the run's canary account.

Both secrets are kept the same way (one bcrypt row per secret, used once) and observed the
same way (:mod:`harness.probes.mfa_codes`), so both checks take one path
(:func:`conclude_mfa_check`): without the service's database, MANUAL; where no canary may
follow a secret, the rows as found alone (FAIL on what they show, else MANUAL for what only
a canary can see); else the rows as found before the canary enrolled (the at-rest area's
``mfa_rows_before_canary`` fixture runs first) and the canary's secret followed. The rules
every kind of row keeps are said here once (:func:`as_found_problems`,
:func:`as_found_sentence`); each check adds its kind's own rules and judges its canary.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import pytest

from harness.canaries import CanarySession
from harness.details import plural
from harness.evidence import EvidenceRecorder
from harness.outcomes import Verdict
from harness.policy import Policy
from harness.probes.canary_account import CANARY_FIXTURE
from harness.probes.database import DatabaseProbe, open_database
from harness.probes.mfa_codes import (
    HashRowsAsFound,
    MfaRowsBeforeCanary,
    observe_codes_as_found,
    observe_tokens_as_found,
    without_canary_verdict,
)
from harness.profile import TargetProfile
from harness.redaction import KnownSecrets

Found = TypeVar("Found", bound=HashRowsAsFound)
Observed = TypeVar("Observed")


@dataclass(frozen=True)
class MfaRows(Generic[Found]):
    """One kind of stored MFA secret, as its check reads it and names it.

    Attributes:
        secrets: what the rows keep, as a sentence starts (``Backup codes``).
        secret: one of them (``code``).
        rows: the rows (``code rows``).
        row: one row (``code row``).
        used: one row used before it was made (``code row``, ``recovery token``).
        follow: what only a canary can see (``That codes are shown once and work once``).
        by_hand: how a person sees it.
        evidence: the name the check's verdict details are attached under.
        as_found: every user's rows as found, read now in the database.
        before_canary: every user's rows as found before the run's canary enrolled.
    """

    secrets: str
    secret: str
    rows: str
    row: str
    used: str
    follow: str
    by_hand: str
    evidence: str
    as_found: Callable[[DatabaseProbe, Policy], Found]
    before_canary: Callable[[MfaRowsBeforeCanary], Found]

    @property
    def broken(self) -> str:
        """What breaks the promise, as a FAIL starts (``MFA backup codes``)."""
        return f"MFA {self.secrets.lower()}"


CODE_ROWS = MfaRows(
    "Backup codes", "code", "code rows", "code row", "code row",
    "That codes are shown once and work once",
    "By hand: set up MFA on a test account, check GET /api/v1/mfa never shows the codes, that "
    "mfa_backup_codes holds one bcrypt hash per code, and that a code works once only.",
    "backup-codes", observe_codes_as_found, MfaRowsBeforeCanary.codes_or_raise)
TOKEN_ROWS = MfaRows(
    "Recovery tokens", "token", "recovery-token rows", "recovery-token row", "recovery token",
    "That a token is only in the mail and works once",
    "By hand: request a recovery mail for a test account, check the token appears only in the "
    "mail, that recovery_tokens stores a bcrypt hash the token verifies, and that the link works "
    "once only.",
    "recovery-tokens", observe_tokens_as_found, MfaRowsBeforeCanary.tokens_or_raise)


def as_found_problems(kind: MfaRows[Found], found: Found, own: list[str]) -> list[str]:
    """What every user's rows show against the rules every kind keeps (bcrypt at the minimum
    cost, no hash string twice, none used before it was made), with ``own``: the kind's own
    rules' breaches, in the order the sentences read them (ids only)."""
    return found.weak_or_copied(kind.row) + own + found.used_before_made(kind.used)


def as_found_sentence(kind: MfaRows[Found], found: Found, state: str, own: str) -> str:
    """What every user's rows show when they keep every rule: ``state`` says how many are
    still usable (``27 unused``), ``own`` the kind's own rules."""
    return (f"As found, the {found.rows} {kind.rows} ({state}) of {plural(found.users, 'user')} "
            f"are bcrypt at cost {found.min_cost} or more ({found.costs_named()}), no hash string "
            f"is stored twice, {own}, and none was used before it was made.")


def rows_alone_verdict(kind: MfaRows[Found], found: Found, problems: list[str], sentence: str,
                       reason: str) -> Verdict:
    """Every user's rows as found, when no canary can follow a secret (``reason``): FAIL on the
    ``problems`` they show, ERROR when unread, else MANUAL saying ``sentence``."""
    return without_canary_verdict(found, problems, sentence, reason, broken=kind.broken, rows=kind.rows,
                                  secret=kind.secret, follow=kind.follow, by_hand=kind.by_hand)


def followed_verdict(kind: MfaRows[Found], found: Found, sentence: str, canary: str,
                     details: Mapping[str, Any]) -> Verdict:
    """Where neither the rows as found nor the canary's secret broke the promise: PASS saying
    both (``sentence``, ``canary``), or ERROR when the rows could not be judged as found."""
    if found.unreadable:
        return Verdict.error(f"The stored {kind.rows} could not be judged as found "
                             f"({found.unreadable}). {canary}", **details)
    return Verdict.passed(f"{sentence} {canary}", **details)


def conclude_mfa_check(request: pytest.FixtureRequest, profile: TargetProfile, policy: Policy,
                       known_secrets: KnownSecrets, evidence: EvidenceRecorder, kind: MfaRows[Found],
                       refused: str | None, rows_alone: Callable[[Found, str], Verdict],
                       follow: Callable[[CanarySession, TargetProfile, Policy, KnownSecrets, Found],
                                        Observed],
                       judge: Callable[[Observed], Verdict]) -> None:
    """Conclude the check of ``kind``: ``rows_alone`` judges the rows as found when ``refused``
    says why no canary may follow a secret; else ``follow`` observes the canary's secret (with
    the rows as found before it enrolled) and ``judge`` judges it."""
    if profile.database is None:
        evidence.manual(f"{kind.secrets} can only be judged with the service's database, and the "
                        "profile names none. " + kind.by_hand)
    if refused:
        with open_database(profile, policy, known_secrets) as db:
            verdict = rows_alone(kind.as_found(db, policy), refused)
    else:
        # Every user's rows as found, read before the canary enrolled (the fixture runs first).
        found = kind.before_canary(request.getfixturevalue("mfa_rows_before_canary"))
        session = request.getfixturevalue(CANARY_FIXTURE)
        verdict = judge(follow(session, profile, policy, known_secrets, found))
    evidence.attach(kind.evidence, verdict.details)
    evidence.conclude(verdict)
