"""The stored password hashes: every ``users.password_hash`` cell classified (or the policy's
uniform sample of them), read side by side on every core, and the canary's password checked
against its own row.

A full read asks the server for the table's heap pages a chunk at a time
(:data:`~harness.probes.pg_reads.CHUNK_PAGES`), the values of a bcrypt hash's 60 octets of each
chunk joined into one value (:meth:`~harness.probes.database.DatabaseProbe.joined_pages`): a
TID range scan, which needs no index, no sort and no unique key, and reads every row once
whatever its id (a NULL one, or one shared by two rows, included). The check's own session
exports its snapshot and measures the table in it; ``[scan] jobs`` readers (threads of this
process, one read-only connection each) import that snapshot and take the next chunk as they
finish one, so the cores stay busy to the end and every chunk sees the same table: a row
updated meanwhile is neither read twice nor missed. The check's session holds the table until
the readers are done (a rewrite would move rows between chunks), and a reader that finds a
rewrite or schema change queued behind that hold gives way within a second (an ERROR saying
so), rather than holding it and the service's queries after it for ``timeouts.command_s``.
A chunk of nothing but well-formed bcrypt is counted at once
(:func:`~harness.formats.bcrypt_hash.bcrypt_lines_costs`, native code where it is installed,
the GIL released); any other chunk's rows are read again from the same
snapshot and classified row by row (:class:`~harness.column_scans.HashTally`), and examples
name the first rows in the order the table stores them, whatever the number of readers.
Measured on 1M users (Xeon, 2 cores, load 2-4): 0.29-0.32 s of server CPU and 0.08-0.10 s of
client CPU a million rows, against 0.45-0.48 s and 0.16-0.21 s for the keyset chunks over ``id``
this read replaced (20M users, load 8: 0.31-0.34 s and 0.07 s).

A sampled read, and a table that cannot be read by pages (a server before PostgreSQL 14, a
view, a role not granted ``ctid``), keep the row-by-row ``COPY`` of key ranges in worker
processes (:func:`~harness.probes.range_workers.classify_hash_range`), and where ``id`` may be
NULL, of the rows whose ``id`` is NULL. The readers stop early: on the first one that fails, or
Ctrl-C, the others stop at their next chunk or block (:func:`~harness.parallel_scan.
stop_point`), and the error names the failed chunk's pages.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from harness.canaries import Canary
from harness.column_scans import EXAMPLES, HashColumnScan, HashTally
from harness.formats.bcrypt_hash import (
    HashScheme,
    LinesCosts,
    bcrypt_check,
    classify_stored_hash,
    lines_classifier,
)
from harness.outcomes import ProbeError
from harness.parallel_scan import (
    PART_MAX_ROWS,
    ScanPlan,
    plan_scan,
    results_of,
    scan_jobs,
    stop_point,
    worker_pool,
)
from harness.policy import Policy
from harness.probes import pg_reads
from harness.probes.database import DatabaseProbe, open_database
from harness.probes.pg_reads import JoinedChunk
from harness.probes.range_workers import RangeRead, classify_hash_range
from harness.profile import TargetProfile
from harness.redaction import KnownSecrets
from harness.sampling import SampleNote

#: The column the check classifies.
COLUMN = ("users", "password_hash")


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
        tally, plan = classify_column(db, profile, policy, known)
        scan = tally.scan("users.password_hash")
        sample = plan.sampled(scan.rows) if plan is not None else None
        if canary is None or canary.user_id is None:
            return PasswordObservation(scan, canary_note=canary_note, sample=sample)
        own = [v for batch in db.stream_column("users", "password_hash", where="id = %s",
                                               params=(canary.user_id,)) for _, v in batch]
    if not own:
        return PasswordObservation(scan, "row missing", sample=sample)
    kind = classify_stored_hash(own[0])
    return PasswordObservation(scan, bcrypt_check(canary.password, own[0]).value, kind.cost,
                               sample=sample)


def classify_column(db: DatabaseProbe, profile: TargetProfile, policy: Policy,
                    known: KnownSecrets, *, column: tuple[str, str] = COLUMN,
                    take: Take | None = None) -> tuple[HashTally, ScanPlan | None]:
    """``column`` (``users.password_hash``) classified, its tally saying how it was read, and
    the sample's plan where the policy samples: by pages in ``db``'s exported snapshot where the
    table can be read so, else by key ranges in worker processes. ``take`` replaces the
    classification of the joined chunks (the benchmark's bare read counts them instead)."""
    if policy.scan.sample_rows is None:
        # The table held until every reader is done (a rewrite between two of a reader's
        # transactions would move rows into chunks already read).
        with db.exported_snapshot(column[0]) as snapshot:
            pages = db.page_span(column[0]) if snapshot is not None else None
            if snapshot is not None and pages is not None:
                chunks, (lines, engine) = _Chunks(pages), lines_classifier()
                readers = max(1, min(scan_jobs(policy), chunks.count))
                with worker_pool(readers, threads=True) as submit:
                    shares = results_of([submit(_read_pages, profile, policy, known, snapshot,
                                                chunks, column, lines, take)
                                         for _ in range(readers)])
                return _merged(shares, policy, f"joined pages, {readers} reader"
                                               f"{'s' if readers > 1 else ''}, {engine} classifier"
                               ), None
    plan = plan_scan(db, column[0], policy)
    with worker_pool(plan.jobs) as submit:
        parts = results_of([submit(classify_hash_range, RangeRead(profile, policy, low, high,
                                                                  plan.sample_percent, null_key),
                                   column)
                            for low, high, null_key in plan.reads])
    tally = HashTally(policy.bcrypt.cost, read=f"key ranges by COPY, {plan.jobs} workers")
    for part in parts:
        tally.absorb(part)
    return tally, (plan if plan.sample is not None else None)


class _Chunks:
    """The chunks of a table's pages, handed out in page order to whichever reader asks."""

    def __init__(self, pages: int) -> None:
        self.pages = pages
        # Read when the scan starts, so that a test may make chunks small.
        self.step = pg_reads.CHUNK_PAGES
        self.count = -(-pages // self.step)
        self._next = 0
        self._lock = threading.Lock()

    def __call__(self) -> tuple[int, int] | None:
        with self._lock:
            first = self._next * self.step
            if first >= self.pages:
                return None
            self._next += 1
        # The last chunk is open: no page is left out, however the size was measured.
        return first, (first + self.step if first + self.step < self.pages
                       else pg_reads.LAST_PAGE_END)


@dataclass
class _Share:
    """What one reader classified: the counts of every chunk it read, and the chunks read again
    whose examples may be among the column's first (by their first page: once the reader holds
    :data:`EXAMPLES` of both kinds, no later chunk's examples can be, and its rows are counted
    with the rest).

    Attributes:
        counted: the rows whose examples are never named.
        named: ``(first page, tally)`` of each chunk read again while examples were wanted.
        reading: the tally the rows read again go to now.
    """

    counted: HashTally
    named: list[tuple[int, HashTally]] = field(default_factory=list)
    reading: HashTally | None = None

    def examples_held(self, chunks: slice = slice(None)) -> tuple[int, int]:
        """(examples, cost examples) the ``chunks`` of :attr:`named` hold."""
        return (sum(len(t.examples) for _, t in self.named[chunks]),
                sum(len(t.cost_examples) for _, t in self.named[chunks]))

    def settle(self) -> None:
        """The last chunk read again added to the counts, its examples dropped, where none of
        them can be among the column's first (the chunks before it hold enough of its kinds):
        at most 2 x :data:`EXAMPLES` chunks are kept, however many are read again."""
        if not self.named:
            return
        last = self.named[-1][1]
        examples, cost_examples = self.examples_held(slice(-1))
        if (examples < EXAMPLES and last.examples) \
                or (cost_examples < EXAMPLES and last.cost_examples):
            return
        self.named.pop()
        last.examples.clear()
        last.cost_examples.clear()
        self.counted.absorb(last)


#: What classifies a joined chunk instead (the benchmark's bare read counts it): True when the
#: chunk is done with, False to have its rows read again into the tally.
Take = Callable[[JoinedChunk, HashTally], bool]


def _read_pages(profile: TargetProfile, policy: Policy, known: KnownSecrets, snapshot: str,
                chunks: _Chunks, column: tuple[str, str], lines: LinesCosts,
                take: Take | None) -> _Share:
    """One reader: chunks of pages from ``chunks`` until none is left, over a connection of its
    own in the exported ``snapshot``. Run by a pool's thread, it stops at the next chunk or
    block once the pool stops.

    Raises:
        ProbeError: a chunk could not be read; the message names its pages."""
    cost = policy.bcrypt.cost
    share = _Share(HashTally(cost))
    reading: list[tuple[int, int]] = []

    def handed_out() -> tuple[int, int] | None:
        reading[:] = [ahead] if (ahead := chunks()) is not None else []
        return ahead

    def counted(chunk: JoinedChunk) -> bool:
        stop_point()
        if take is not None:
            return take(chunk, share.counted)
        share.settle()
        held = share.examples_held()
        costs = lines(chunk.joined, chunk.values) if chunk.values == chunk.rows else None
        if costs is not None and (cost is None or set(costs) <= {cost} or held[1] >= EXAMPLES):
            # What HashTally.add counts for a batch of nothing but well-formed bcrypt.
            share.counted.rows += chunk.rows
            share.counted.schemes[HashScheme.BCRYPT.value] += chunk.rows
            share.counted.costs.update(costs)
            return True
        share.reading = share.counted
        if min(held) < EXAMPLES:
            share.reading = HashTally(cost)
            share.named.append((chunk.first, share.reading))
        return False

    try:
        with DatabaseProbe(profile, policy, known_secrets=known) as db:
            for block in db.joined_pages(*column, snapshot=snapshot, chunks=handed_out,
                                         take=counted, part_rows=PART_MAX_ROWS):
                stop_point()
                assert share.reading is not None
                share.reading.add_copy_block(block)
        share.settle()
    except ProbeError as exc:
        where = f" ({column[0]} pages {pg_reads.pages_named(reading[0])})" if reading else ""
        raise ProbeError(f"{exc}{where}") from None
    return share


def _merged(shares: list[_Share], policy: Policy, read: str) -> HashTally:
    """The readers' shares as one tally: counts added, examples in page order."""
    tally = HashTally(policy.bcrypt.cost, read=read)
    for _, named in sorted((n for share in shares for n in share.named), key=lambda n: n[0]):
        tally.absorb(named)
    for share in shares:
        tally.absorb(share.counted)
    return tally
