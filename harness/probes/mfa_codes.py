"""MFA backup codes and recovery tokens, followed through the canary account.

The codes the API handed out are looked for again in its answers, matched to
their stored rows (few bcrypt verifications) and redeemed twice; a fresh
recovery token is taken from the mail, looked for in the API's answer and in
its stored row, and confirmed twice.
"""

from __future__ import annotations

import hmac
import os
from collections import Counter
from dataclasses import dataclass
from typing import Any

from harness.canaries import CanarySession
from harness.formats.bcrypt_hash import CodeMatching, bcrypt_check, classify_stored_hash, match_codes_to_rows
from harness.policy import Policy
from harness.probes.database import open_database
from harness.profile import TargetProfile
from harness.redaction import KnownSecrets
from harness.sweep import secrets_in_text


@dataclass(frozen=True)
class BackupCodesObservation:
    """Everything at_rest.backup_codes judges.

    Attributes:
        codes_returned: how many codes ``POST /mfa/setup`` answered.
        shown_again: codes found again in the ``GET /mfa`` answer.
        rows: the canary's ``mfa_backup_codes`` rows.
        row_schemes: scheme → rows.
        matching: which row each code verifies against.
        redeem_first: status of the first redeem of one code.
        redeem_second: status of redeeming the same code again.
    """

    codes_returned: int
    shown_again: tuple[str, ...]
    rows: int
    row_schemes: dict[str, int]
    matching: CodeMatching
    redeem_first: int
    redeem_second: int


def _rows_of(profile: TargetProfile, policy: Policy, known: KnownSecrets, table: str, column: str,
             user_id: int | None, *, after: int | None = None) -> list[tuple[Any, Any]]:
    """One user's ``(id, value)`` rows of ``table.column`` (only those after row id ``after``,
    if given), read on a connection of their own."""
    where, params = (("user_id = %s", (user_id,)) if after is None
                     else ("user_id = %s AND id > %s", (user_id, after)))
    with open_database(profile, policy, known) as db:
        return [row for batch in db.stream_column(table, column, where=where, params=params)
                for row in batch]


def observe_backup_codes(session: CanarySession, profile: TargetProfile, policy: Policy,
                         known: KnownSecrets) -> BackupCodesObservation:
    """Look for the canary's codes in ``GET /mfa``, match them to their rows, redeem one twice."""
    canary = session.canary
    codes = list(canary.backup_codes)
    session.ensure_session()
    status_text = str(session.api.mfa_status().body) + " " + str(canary.mfa_status_body)
    shown = secrets_in_text(status_text, codes, "code") if codes else ()
    rows = _rows_of(profile, policy, known, "mfa_backup_codes", "code_hash", canary.user_id)
    schemes = Counter(classify_stored_hash(v).scheme.value for _, v in rows)
    matching = match_codes_to_rows(codes, rows, workers=os.cpu_count() or 2)
    first = second = 0
    if codes:
        first = session.api.redeem_backup_code(codes[-1]).status
        second = session.api.redeem_backup_code(codes[-1]).status
    return BackupCodesObservation(len(codes), shown, len(rows), dict(schemes), matching,
                                  first, second)


@dataclass(frozen=True)
class RecoveryObservation:
    """Everything at_rest.recovery_tokens judges.

    Attributes:
        mail_received: a recovery mail with a token reached the canary's inbox.
        in_request_answer: the token appeared in the API's answer to the request.
        row_found: the canary has a recovery_tokens row made for this request.
        row_scheme: what that row's stored value is.
        row_match: the mailed token checked against the row (one bcrypt verification).
        row_is_token: the row holds the token itself.
        confirm_first: status of the first confirm with the token.
        confirm_second: status of confirming again with the same token.
    """

    mail_received: bool
    in_request_answer: bool
    row_found: bool
    row_scheme: str
    row_match: str
    row_is_token: bool
    confirm_first: int
    confirm_second: int


def observe_recovery(session: CanarySession, profile: TargetProfile, policy: Policy,
                     known: KnownSecrets) -> RecoveryObservation:
    """Request a fresh recovery token, find it in the answer and its row, confirm it twice."""
    canary = session.canary
    before = max((k for k, _ in _rows_of(profile, policy, known, "recovery_tokens", "token_hash",
                                          canary.user_id)), default=0)
    # A fresh token: one from the start of the run may have expired by now.
    mail = session.fresh_recovery()
    token = mail.token
    if token is None:
        return RecoveryObservation(False, False, False, "", "", False, 0, 0)
    in_answer = bool(secrets_in_text(str(canary.recovery_request_body), [token], "token"))
    rows = _rows_of(profile, policy, known, "recovery_tokens", "token_hash", canary.user_id,
                    after=before)
    stored = max(rows, key=lambda r: r[0])[1] if rows else None
    scheme = classify_stored_hash(stored).scheme.value if rows else ""
    is_token = isinstance(stored, str) and hmac.compare_digest(stored.encode(), token.encode())
    match = bcrypt_check(token, stored).value if rows else ""
    first = session.api.confirm_recovery(canary.email, token)
    second = session.api.confirm_recovery(canary.email, token)
    for answer in (first, second):
        if isinstance(answer.body, dict) and isinstance(answer.body.get("token"), str):
            known.add(answer.body["token"], "canary session token (recovery)")
    return RecoveryObservation(True, in_answer, bool(rows), scheme, match, is_token,
                               first.status, second.status)
