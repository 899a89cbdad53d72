"""The database area of the plaintext sweep: every column of every row of every readable
table searched for the known secrets, in the text a plain ``COPY`` (or ``pg_dump``) writes.

A table is read with ``COPY ... TO STDOUT`` in blocks of whole lines, and each block is
searched whole as it arrives (:meth:`~harness.sweep.SecretSweep.scan_copy_rows`): only a hit
is placed in its field, so there is no Python step per column or value and nothing is
written to disk (the first design split every table into a spool file per column first:
8.8 GB of temporary disk at 20M ``channels`` rows, and 1.9 CPU s of the 3 s a 1M-row sweep
took).

A table of at least :data:`SPLIT_MIN_PAGES` heap pages is read in parts of its pages
(``ctid`` ranges: a TID range scan, no index and no sort, so the parts together cost the server
what one read does; any table, keyed or not), at least one part per worker and at most
:data:`PART_PAGES` pages a part, each part one ``COPY`` within ``timeouts.command_s`` on a
read-only session of its own, by ``[scan] jobs`` threads of this process. All parts read one
snapshot, exported by the check's own session (``pg_export_snapshot()``, as ``pg_dump --jobs``
does) and in which the pages are counted, the table held as ``pg_dump`` holds it (no rewrite
until the parts are read), so they are the table as it stood at one moment: a row updated
meanwhile (moved to another page) is read once, as it was. Threads, not
processes: the automaton searches ``bytes`` with the GIL released and libpq waits with it
released; the Python step per row of the read holds it (1M rows of ``channels``: 0.68 CPU s to
read, 0.34 to search, 1.27 s in the server's backend). A smaller table, or one of a server
that exports no snapshot or cannot read by pages (before PostgreSQL 14, ``ctid`` not granted),
is read in one ``COPY`` on the check's own session.

A hit names its column (``postgres:table.column``), its row (the integer primary key's
value, else the row's ``ctid``: as :mod:`harness.shape_sweep` names rows) and the byte in the
value's text where it starts: what an auditor needs to ``SELECT`` the row and look.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from harness.formats.copy_text import first_fields_bytes
from harness.outcomes import ProbeError
from harness.parallel_scan import results_of, scan_jobs, stop_point, worker_pool
from harness.policy import Policy
from harness.probes.database import ColumnInfo, DatabaseProbe
from harness.probes.pg_reads import LAST_PAGE_END, pages_named
from harness.profile import TargetProfile
from harness.redaction import KnownSecrets
from harness.sweep import SecretSweep, SweepReport

#: The types of a primary key that names a row.
INTEGER_TYPES = ("smallint", "integer", "bigint")
#: A table of fewer heap pages (32 MiB) is read in one ``COPY`` on the check's session.
SPLIT_MIN_PAGES = 4_096
#: Heap pages a part covers at most (512 MiB: about 1.1M rows of the reference's ``channels``),
#: so that a part's ``COPY`` ends well within ``timeouts.command_s`` whatever the table's size.
PART_PAGES = 65_536


@dataclass(frozen=True)
class TableSweep:
    """How one table is read for the sweep: each line of its ``COPY`` is the row's locator,
    then its other columns.

    Attributes:
        schema, table: the table.
        locator: the column that names a row: its integer primary key, else ``ctid``; None
            where the role may not read the ``ctid`` (the rows are then named by nothing).
        columns: the table's other columns swept, in order.
        locations: ``postgres:table.column`` of each field of a line, None for a ``ctid``
            (read to name the row, never searched nor counted).
    """

    schema: str
    table: str
    locator: str | None
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


def page_parts(pages: int, jobs: int) -> list[tuple[int, int]]:
    """``(first, end)`` heap pages of each part of a table of ``pages`` pages: ``jobs`` parts at
    least, :data:`PART_PAGES` pages a part at most, the last one open to :data:`LAST_PAGE_END`."""
    count = max(jobs, -(-pages // PART_PAGES), 1)
    step = max(1, -(-pages // count))
    starts = list(range(0, max(pages, 1), step))
    return [(first, first + step) for first in starts[:-1]] + [(starts[-1], LAST_PAGE_END)]


def sweep_database(db: DatabaseProbe, sweep: SecretSweep, report: SweepReport, *,
                   profile: TargetProfile, policy: Policy,
                   columns: Sequence[ColumnInfo] | None = None) -> SweepReport:
    """Search every row of ``columns`` (default: every column the role can read) into
    ``report``: one location per column, the bytes of their ``COPY`` text, the hits kept in
    table order and, within a table, in page order. ``profile`` and ``policy`` open the
    workers' sessions (the check's, as ``db`` was opened; ``[scan] jobs`` workers, never a
    sample: every row is searched).

    Raises:
        ProbeError: a table or a part of one could not be read within ``timeouts.command_s``;
            the message names the columns (and the part's pages), never a value.
    """
    listed = columns if columns is not None else db.visible_tables().columns
    jobs = scan_jobs(policy)
    sweep = sweep.in_copy_text()
    for table in table_sweeps(listed):
        report.locations += sum(location is not None for location in table.locations)
        for part in _table_parts(db, sweep, table, profile, policy, jobs):
            sweep.absorb(report, part)
    return report


def _table_parts(db: DatabaseProbe, sweep: SecretSweep, table: TableSweep,
                 profile: TargetProfile, policy: Policy, jobs: int) -> list[SweepReport]:
    """One table swept, part by part in page order, or in one read on ``db``; rows named by
    nothing where the role may not read the ``ctid`` that would name them (granted only some
    columns), and then read in one part."""
    if table.locator == "ctid" and not db.reads_ctid(table.table, schema=table.schema):
        table = dataclasses.replace(table, locator=None)
    with db.exported_snapshot(table.table, schema=table.schema) as snapshot:
        pages = (db.page_span(table.table, schema=table.schema)
                 if snapshot and table.locator is not None else None)
        parts = page_parts(pages, jobs) if pages is not None and pages >= SPLIT_MIN_PAGES else []
        if len(parts) > 1:
            with worker_pool(jobs, threads=True) as submit:
                return results_of([submit(_sweep_pages, profile, policy, sweep, table, part,
                                          snapshot) for part in parts])
    return [sweep_part(db, sweep, table)]


def sweep_part(db: DatabaseProbe, sweep: SecretSweep, table: TableSweep, *,
               pages: tuple[int, int] | None = None,
               snapshot: str | None = None) -> SweepReport:
    """The rows of ``table`` (of its heap ``pages``, ``first <= page < end``, if given) read on
    ``db`` (in ``snapshot`` if given) and searched block by block as they arrive: a report of
    their bytes and hits (its ``locations`` left at 0). Stops between two blocks once its pool
    stops."""
    part = SweepReport()
    located = table.locations[0] is not None
    for block in db.copy_rows(table.table, table.columns, schema=table.schema, key=table.locator,
                              pages=pages, snapshot=snapshot):
        stop_point()
        part.bytes_scanned += len(block) if located else len(block) - first_fields_bytes(block)
        sweep.record(part, sweep.scan_copy_rows(block, table.locations))
    return part


def _sweep_pages(profile: TargetProfile, policy: Policy, sweep: SecretSweep, table: TableSweep,
                 pages: tuple[int, int], snapshot: str) -> SweepReport:
    """One part of a table, on a session of its own in the exported ``snapshot``; a failure
    is a ProbeError naming the part's pages."""
    try:
        with DatabaseProbe(profile, policy, known_secrets=KnownSecrets()) as db:
            return sweep_part(db, sweep, table, pages=pages, snapshot=snapshot)
    except ProbeError as exc:
        raise ProbeError(f"{exc} ({table.table} pages {pages_named(pages)})") from None
