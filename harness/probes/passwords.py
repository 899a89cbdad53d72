"""The stored password hashes: every ``users.password_hash`` cell classified, and the
canary's password checked against its own row."""

from __future__ import annotations

from dataclasses import dataclass

from harness.canaries import Canary
from harness.column_scans import HashColumnScan, scan_hash_cells
from harness.formats.bcrypt_hash import bcrypt_check, classify_stored_hash
from harness.policy import Policy
from harness.probes.database import open_database
from harness.profile import TargetProfile
from harness.redaction import KnownSecrets


@dataclass(frozen=True)
class PasswordObservation:
    """Everything at_rest.password_hashes judges.

    Attributes:
        scan: ``users.password_hash`` classified.
        canary_match: the canary password checked against its own row (one bcrypt
            verification); None without a canary.
        canary_cost: the bcrypt cost of the canary's row.
        canary_note: why there is no canary, if there is none.
    """

    scan: HashColumnScan
    canary_match: str | None = None
    canary_cost: int | None = None
    canary_note: str = ""


def observe_passwords(profile: TargetProfile, policy: Policy, known: KnownSecrets,
                      canary: Canary | None, canary_note: str = "") -> PasswordObservation:
    """Classify every ``users.password_hash`` cell and check the canary's password against its row."""
    with open_database(profile, policy, known) as db:
        rows = (row for batch in db.stream_column("users", "password_hash") for row in batch)
        scan = scan_hash_cells(rows, "users.password_hash", policy.bcrypt.cost)
        if canary is None or canary.user_id is None:
            return PasswordObservation(scan, canary_note=canary_note)
        own = [v for batch in db.stream_column("users", "password_hash", where="id = %s",
                                               params=(canary.user_id,)) for _, v in batch]
    if not own:
        return PasswordObservation(scan, "row missing")
    kind = classify_stored_hash(own[0])
    return PasswordObservation(scan, bcrypt_check(canary.password, own[0]).value, kind.cost)
