"""The stored password hashes: every ``users.password_hash`` cell classified (or the policy's
uniform sample of them), key ranges read side by side, and the canary's password checked
against its own row.

A full read of a table whose ``id`` alone carries a unique index asks the server for the
values of each key range joined into chunks of 16,384 rows
(:meth:`~harness.probes.database.DatabaseProbe.joined_column`; only values of a bcrypt
hash's 60 octets are joined, so a chunk's text stays about 1 MB): a chunk of nothing but
well-formed bcrypt hashes is counted at once (:func:`~harness.formats.bcrypt_hash.
bcrypt_lines_costs`), any other chunk's rows are read again from the same snapshot and
classified row by row, exactly as before (:class:`~harness.column_scans.HashTally`). The
ranges are read by threads of this process, one read-only connection each: Python pays per
chunk, so the work is the servers' (measured: 1M hashes in 0.07 s of client CPU and 0.5 s of
server CPU), and no worker process is started. A sampled read, and a table whose ``id`` is
not known unique (chunks that follow each other by key would skip or repeat rows sharing
one, or never reach a NULL one), keep the row-by-row ``COPY`` of each range in worker
processes (:func:`~harness.probes.range_workers.classify_hash_range`), and, where ``id`` may be
NULL, of the rows whose ``id`` is NULL. The threads stop early: on the first range that fails,
or Ctrl-C, the others stop at their next chunk or block (:func:`~harness.parallel_scan.
stop_point`), and the error names the failed range.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.canaries import Canary
from harness.column_scans import EXAMPLES, HashColumnScan, HashTally
from harness.formats.bcrypt_hash import (
    HashScheme,
    bcrypt_check,
    bcrypt_lines_costs,
    classify_stored_hash,
)
from harness.parallel_scan import ScanPlan, plan_scan, reading_part, results_of, stop_point, worker_pool
from harness.policy import Policy
from harness.probes.database import DatabaseProbe, open_database
from harness.probes.pg_reads import JoinedChunk
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
        tally = HashTally(policy.bcrypt.cost)
        for part in _classified_parts(db, profile, policy, known, plan):
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


def _classified_parts(db: DatabaseProbe, profile: TargetProfile, policy: Policy,
                      known: KnownSecrets, plan: ScanPlan) -> list[HashTally]:
    """Each part of the plan classified, in key order (the rows whose id is NULL last)."""
    if plan.sample_percent is not None or plan.null_keys \
            or any(low is None or high is None for low, high in plan.parts) \
            or not db.key_is_unique("users"):
        with worker_pool(plan.jobs) as submit:
            return results_of([submit(classify_hash_range, RangeRead(profile, policy, low, high,
                                                                     plan.sample_percent, null_key))
                               for low, high, null_key in plan.reads])
    with worker_pool(plan.jobs, threads=True) as submit:
        return results_of([submit(classify_hash_part, profile, policy, known, low, high)
                           for low, high in plan.parts])


def classify_hash_part(profile: TargetProfile, policy: Policy, known: KnownSecrets,
                       low: int | None, high: int | None, *,
                       column: tuple[str, str] = ("users", "password_hash")) -> HashTally:
    """``users.password_hash`` (``column``) for ``low <= id <= high``, over a connection of
    its own: each chunk of well-formed bcrypt counted at once, any other chunk's rows read
    again and classified row by row (every row by ``COPY`` when ``id`` is not unique). Run by
    a pool's thread, it stops at the next chunk or block once the pool stops.

    Raises:
        ProbeError: the part could not be read; the message names its key range."""
    tally = HashTally(policy.bcrypt.cost)

    def counted(chunk: JoinedChunk) -> bool:
        stop_point()
        costs = (bcrypt_lines_costs(chunk.joined, chunk.values)
                 if chunk.values == chunk.rows else None)
        if costs is None or not (tally.expected_cost is None
                                 or set(costs) <= {tally.expected_cost}
                                 or len(tally.cost_examples) >= EXAMPLES):
            return False
        # What HashTally.add counts for a batch of nothing but well-formed bcrypt.
        tally.rows += chunk.rows
        tally.schemes[HashScheme.BCRYPT.value] += chunk.rows
        tally.costs.update(costs)
        return True

    with reading_part(column[0], low, high), \
            DatabaseProbe(profile, policy, known_secrets=known) as db:
        for block in db.joined_column(*column, take=counted, low=low, high=high):
            stop_point()
            tally.add_copy_block(block)
    return tally
