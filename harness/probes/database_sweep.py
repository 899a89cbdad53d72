"""The database area of the plaintext sweep: every column of every row of every readable
table searched for the known secrets, in the text a plain ``COPY`` (or ``pg_dump``) writes.

A table is read with ``COPY ... TO STDOUT`` in blocks of whole lines, and each block is
searched whole as it arrives (:meth:`~harness.sweep.SecretSweep.scan_copy_rows`): only a hit
is placed in its field, so there is no Python step per column or value and nothing is
written to disk (the first design split every table into a spool file per column first:
8.8 GB of temporary disk at 20M ``channels`` rows, and 1.9 CPU s of the 3 s a 1M-row sweep
took).

A table whose primary key is an integer ``id`` and that holds at least
:data:`~harness.parallel_scan.PARALLEL_MIN_ROWS` rows is read in key ranges
(:func:`~harness.parallel_scan.plan_scan`, without its sampling: every row is searched) by
``[scan] jobs`` threads of this process, each over a read-only session of its own, each part
one ``COPY`` within ``timeouts.command_s``. All parts read one snapshot, exported by the
check's own session (``pg_export_snapshot()``, as ``pg_dump --jobs`` does), so they are the
table as it stood at one moment: a row whose key is changed meanwhile is still read once.
Threads, not processes: the automaton searches ``bytes`` with the GIL released and libpq
waits with it released; the Python step per row of the read holds it (measured, 1M rows of
``channels``: 0.68 CPU s to read, 0.34 to search, 1.27 s in the server's backend). Any
other table, or a server that exports no snapshot, is read in one ``COPY`` on the check's
own session.

A hit names its column (``postgres:table.column``), its row (the integer primary key's
value, else the row's ``ctid``: as :mod:`harness.shape_sweep` names rows) and the byte in the
value's text where it starts: what an auditor needs to ``SELECT`` the row and look.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from harness.formats.copy_text import first_fields_bytes
from harness.parallel_scan import ScanPlan, plan_scan, reading_part, results_of, stop_point, worker_pool
from harness.policy import Policy
from harness.probes.database import ColumnInfo, DatabaseProbe
from harness.probes.range_workers import RangeRead
from harness.profile import TargetProfile
from harness.redaction import KnownSecrets
from harness.sweep import SecretSweep, SweepReport

#: The types of a primary key that names a row (and, as ``id``, splits a table into ranges).
INTEGER_TYPES = ("smallint", "integer", "bigint")
#: The key a table is split by (the one :func:`~harness.parallel_scan.part_name` names).
RANGE_KEY = "id"


@dataclass(frozen=True)
class TableSweep:
    """How one table is read for the sweep: each line of its ``COPY`` is the row's locator,
    then its other columns.

    Attributes:
        schema, table: the table.
        locator: the column that names a row: its integer primary key, else ``ctid``.
        columns: the table's other columns swept, in order.
        locations: ``postgres:table.column`` of each field of a line, None for a ``ctid``
            (read to name the row, never searched nor counted).
    """

    schema: str
    table: str
    locator: str
    columns: tuple[str, ...]
    locations: tuple[str | None, ...]


def table_sweeps(columns: Sequence[ColumnInfo]) -> list[TableSweep]:
    """The reads of the tables of ``columns``, each table once, in the order first listed."""
    tables: dict[tuple[str, str], list[ColumnInfo]] = {}
    for info in columns:
        tables.setdefault((info.schema, info.table), []).append(info)
    reads = []
    for (schema, table), infos in tables.items():
        primary = [c for c in infos if c.is_primary_key]
        key = primary[0] if len(primary) == 1 and primary[0].data_type in INTEGER_TYPES else None
        others = [c for c in infos if c is not key]
        reads.append(TableSweep(schema, table, key.column if key else "ctid",
                                tuple(c.column for c in others),
                                (f"postgres:{key.name}" if key else None,
                                 *(f"postgres:{c.name}" for c in others))))
    return reads


def sweep_database(db: DatabaseProbe, sweep: SecretSweep, report: SweepReport, *,
                   profile: TargetProfile, policy: Policy,
                   columns: Sequence[ColumnInfo] | None = None) -> SweepReport:
    """Search every row of ``columns`` (default: every column the role can read) into
    ``report``: one location per column, the bytes of their ``COPY`` text, the hits kept in
    table order and, within a table, in key order. ``profile`` and ``policy`` open the
    workers' sessions (the check's, as ``db`` was opened).

    Raises:
        ProbeError: a table or a part of one could not be read within ``timeouts.command_s``;
            the message names the columns (and the part's key range), never a value.
    """
    listed = columns if columns is not None else db.visible_tables().columns
    # Every row: the policy's sample is for the column checks, never for the sweep.
    whole = policy.model_copy(update={"scan": policy.scan.model_copy(update={"sample_rows": None})})
    for table in table_sweeps(listed):
        report.locations += sum(location is not None for location in table.locations)
        for part in _table_parts(db, sweep, table, profile, whole):
            sweep.absorb(report, part)
    return report


def _table_parts(db: DatabaseProbe, sweep: SecretSweep, table: TableSweep,
                 profile: TargetProfile, policy: Policy) -> list[SweepReport]:
    """One table swept, part by part in key order, or in one read on ``db``."""
    plan: ScanPlan | None = None
    if table.locator == RANGE_KEY and table.schema == "public":
        plan = plan_scan(db, table.table, policy, key=RANGE_KEY)
    # A key that may be NULL (a child table's) reads whole: no range holds those rows.
    if plan is None or len(plan.parts) == 1 or plan.null_keys:
        return [sweep_part(db, sweep, table)]
    with db.exported_snapshot() as snapshot:
        if snapshot is None:
            return [sweep_part(db, sweep, table)]
        with worker_pool(plan.jobs, threads=True) as submit:
            return results_of([submit(_sweep_range, RangeRead(profile, policy, low, high, None),
                                      sweep, table, snapshot) for low, high in plan.parts])


def sweep_part(db: DatabaseProbe, sweep: SecretSweep, table: TableSweep, *,
               low: int | None = None, high: int | None = None,
               snapshot: str | None = None) -> SweepReport:
    """The rows of ``table`` with ``low <= key <= high`` (None: unbounded) read on ``db`` (in
    ``snapshot`` if given) and searched block by block as they arrive: a report of their
    bytes and hits (its ``locations`` left at 0). Stops between two blocks once its pool
    stops."""
    part = SweepReport()
    located = table.locations[0] is not None
    for block in db.copy_rows(table.table, table.columns, schema=table.schema, key=table.locator,
                              low=low, high=high, snapshot=snapshot):
        stop_point()
        part.bytes_scanned += len(block) if located else len(block) - first_fields_bytes(block)
        sweep.record(part, sweep.scan_copy_rows(block, table.locations))
    return part


def _sweep_range(read: RangeRead, sweep: SecretSweep, table: TableSweep,
                 snapshot: str) -> SweepReport:
    """One part of a table, on a session of its own in the exported ``snapshot``; a failure
    is a ProbeError naming the part's key range."""
    with reading_part(table.table, read.low, read.high), \
            DatabaseProbe(read.profile, read.policy, known_secrets=KnownSecrets()) as db:
        return sweep_part(db, sweep, table, low=read.low, high=read.high, snapshot=snapshot)
