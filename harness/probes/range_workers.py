"""What a worker process of a parallel column scan does with its key range.

Kept apart from the observations (``stored_tokens``, ``passwords``) so that a
worker, started fresh, imports only what it reads and judges with: the
database probe and the column scans, not the HSM, API or canary machinery
(measured: 1.3 s of imports under load, and tens of MB a worker, otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.column_scans import (
    DuplicateCounter,
    DuplicateSpill,
    FernetCounts,
    FernetTally,
    HashTally,
    add_token_block,
)
from harness.formats.fernet import FernetKey
from harness.formats.fernet_engine import NATIVE, block_judge, engine_name
from harness.parallel_scan import reading_part, stop_point
from harness.policy import Policy
from harness.probes.database import DatabaseProbe
from harness.profile import TargetProfile
from harness.redaction import KnownSecrets

#: Token cells a worker holds in memory (4 MB) before writing their fingerprints out: its
#: peak stays near the interpreter's own (measured 114 MiB a worker with 1M cells held).
WORKER_MEMORY_CELLS = 250_000


@dataclass(frozen=True)
class RangeRead:
    """Which rows of a table one worker reads, and as whom.

    Attributes:
        profile, policy: as the check has them (the worker opens its own read-only session).
        low, high: the part's key range (None: unbounded).
        sample_percent: the chance each row has of being read (None: every row).
        null_key: the part is the rows whose key is NULL instead (``low`` and ``high`` None;
            their examples name them ``id NULL``).
    """

    profile: TargetProfile
    policy: Policy
    low: int | None
    high: int | None
    sample_percent: float | None
    null_key: bool = False


@dataclass(frozen=True)
class TokenRing:
    """The key ring and the time tokens are judged at (as the check's own tally has them).

    Attributes:
        keys: the key ring read from the HSM.
        now, max_clock_skew_s: the time tokens are judged at, and the skew allowed.
    """

    keys: tuple[FernetKey, ...]
    now: float
    max_clock_skew_s: float


@dataclass(frozen=True)
class TokenRangeTask:
    """One worker's part of ``channels``: what it reads and judges, and where its cells'
    fingerprints go.

    Attributes:
        read: the rows.
        ring: what verifies them.
        parts: the evidence's parts: the platforms named, then ``other``; ``("",)`` when
            ``channels`` has no platform column.
        columns: the token columns, ``(table, column)``.
        spill_path: the file the part's fingerprints are written to.
    """

    read: RangeRead
    ring: TokenRing
    parts: tuple[str, ...]
    columns: tuple[tuple[str, str], ...]
    spill_path: Path


def judge_token_range(task: TokenRangeTask) -> tuple[list[FernetCounts], DuplicateSpill]:
    """Read one part of ``channels`` (its token columns in one ``COPY``, as stored bytes) and
    judge it: each column's counts, and the part's fingerprints written out.

    Where the native engine is installed, it judges each block first (the GIL released) and
    only the lines it hands back go through the Python path, which gives their reasons.
    Run by a pool's thread, it stops between two blocks once the pool stops (another part
    failed, or Ctrl-C), its connection closed.

    Raises:
        ProbeError: the part could not be read; the message names its key range."""
    duplicates = DuplicateCounter(memory_cells=WORKER_MEMORY_CELLS, spill_path=task.spill_path)
    by_platform = task.parts != ("",)
    ring, read = task.ring, task.read
    judge = block_judge(ring.keys, now=ring.now, max_clock_skew_s=ring.max_clock_skew_s,
                        parts=task.parts if by_platform else None, columns=len(task.columns))
    tallies = [FernetTally(ring.keys, now=ring.now, max_clock_skew_s=ring.max_clock_skew_s,
                           duplicates=duplicates, parts=task.parts,
                           engine=engine_name() if judge is None else NATIVE)
               for _ in task.columns]
    # id[, platform], then the token columns.
    columns = (*(("platform",) if by_platform else ()), *(c for _, c in task.columns))
    table = task.columns[0][0]
    with reading_part(table, read.low, read.high, read.null_key), \
            DatabaseProbe(read.profile, read.policy, known_secrets=KnownSecrets()) as db:
        for block in db.copy_rows(table, columns, low=read.low, high=read.high,
                                  sample_percent=read.sample_percent, stored_bytes=True,
                                  null_key=read.null_key):
            stop_point()
            add_token_block(block, tallies, part_at=1 if by_platform else None, judge=judge)
    return [tally.counts() for tally in tallies], duplicates.export()


def classify_hash_range(read: RangeRead,
                        column: tuple[str, str] = ("users", "password_hash")) -> HashTally:
    """Read one part of ``column`` (``users.password_hash``) in ``COPY`` blocks and classify it
    (stopping between blocks once its pool stops). Raises ProbeError naming the part's key
    range."""
    tally = HashTally(read.policy.bcrypt.cost)
    with reading_part(column[0], read.low, read.high, read.null_key), \
            DatabaseProbe(read.profile, read.policy, known_secrets=KnownSecrets()) as db:
        for block in db.copy_rows(column[0], column[1:], low=read.low, high=read.high,
                                  sample_percent=read.sample_percent, null_key=read.null_key):
            stop_point()
            tally.add_copy_block(block)
    return tally
