"""The stored password hashes: every ``users.password_hash`` cell classified (or the policy's
uniform sample of them), key ranges on every core, and the canary's password checked against
its own row."""

from __future__ import annotations

from dataclasses import dataclass

from harness.canaries import Canary
from harness.column_scans import HashColumnScan, HashTally
from harness.formats.bcrypt_hash import bcrypt_check, classify_stored_hash
from harness.parallel_scan import plan_scan, results_of, worker_pool
from harness.policy import Policy
from harness.probes.database import open_database
from harness.probes.range_workers import RangeRead, classify_hash_range
from harness.profile import TargetProfile
from harness.redaction import KnownSecrets
from harness.sampling import SampleNote


@dataclass(frozen=True)
class PasswordObservation:
    """Everything at_rest.password_hashes judges.

    Attributes:
        scan: ``users.password_hash`` classified.
        canary_match: the canary password checked against its own row (one bcrypt
            verification); None without a canary.
        canary_cost: the bcrypt cost of the canary's row.
        canary_note: why there is no canary, if there is none.
        sample: how the rows were sampled; None when every row was classified.
    """

    scan: HashColumnScan
    canary_match: str | None = None
    canary_cost: int | None = None
    canary_note: str = ""
    sample: SampleNote | None = None


def observe_passwords(profile: TargetProfile, policy: Policy, known: KnownSecrets,
                      canary: Canary | None, canary_note: str = "") -> PasswordObservation:
    """Classify every ``users.password_hash`` cell (or the policy's sample) and check the
    canary's password against its row."""
    with open_database(profile, policy, known) as db:
        plan = plan_scan(db, "users", policy)
        with worker_pool(plan.jobs) as submit:
            parts = results_of([submit(classify_hash_range,
                                       RangeRead(profile, policy, low, high,
                                                 plan.sample_percent))
                                for low, high in plan.parts])
        tally = HashTally(policy.bcrypt.cost)
        for part in parts:
            tally.absorb(part)
        scan = tally.scan("users.password_hash")
        sample = plan.sampled(scan.rows)
        if canary is None or canary.user_id is None:
            return PasswordObservation(scan, canary_note=canary_note, sample=sample)
        own = [v for batch in db.stream_column("users", "password_hash", where="id = %s",
                                               params=(canary.user_id,)) for _, v in batch]
    if not own:
        return PasswordObservation(scan, "row missing", sample=sample)
    kind = classify_stored_hash(own[0])
    return PasswordObservation(scan, bcrypt_check(canary.password, own[0]).value, kind.cost,
                               sample=sample)
