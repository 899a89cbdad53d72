"""The database area of the plaintext sweep against a scratch PostgreSQL 15: every row of every
column searched, whole or in parts of its pages read by threads in one exported snapshot, hits
named by column, row (integer key, else ``ctid``) and byte in the value; a part that overruns
its time is a ProbeError naming it.

The reference each report is compared with is each column read alone (``COPY (SELECT id, c)``)
and each value's text searched on its own."""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from concurrent_sessions import during_the_nth_read, waited_for, with_command_s
from scratch_postgres import INSTALLED, ScratchPostgres, scratch_postgres

from harness.outcomes import ProbeError
from harness.policy import Policy, load_policy
from harness.probes import database_sweep
from harness.probes.database import DatabaseProbe
from harness.probes.database_sweep import sweep_database
from harness.redaction import KnownSecrets
from harness.sweep import SecretSweep, SweepHit, SweepReport

SECRET = "planted-Secret-4711"
ROWS = 3000

pytestmark = pytest.mark.skipif(not INSTALLED, reason="PostgreSQL 15 not installed")


@pytest.fixture(scope="module")
def scratch() -> Iterator[ScratchPostgres]:
    with scratch_postgres("dbsweep-pg-") as pg:
        pg.psql("CREATE ROLE auditor LOGIN;"
                " CREATE TABLE kept (id bigserial PRIMARY KEY, a text, b text, n int,"
                "                    t timestamptz DEFAULT '2026-12-07 18:00+00');"
                " CREATE TABLE loose (a text, b text); CREATE TABLE heap (a text, b text);"
                " CREATE TABLE moved (a text, b text);"
                " CREATE TABLE named (code text PRIMARY KEY, note text);"
                " CREATE TABLE counters (brand_id bigint PRIMARY KEY, note text);"
                " GRANT SELECT ON kept, loose, named, counters, heap, moved TO auditor")
        pg.copy("kept (a, b, n)", [_kept_row(i) for i in range(1, ROWS + 1)])
        pg.copy("loose", [("x", None), (f"tab\t{SECRET}", "\\N"), (None, SECRET)])
        pg.copy("named", [(SECRET, "a"), ("k2", f"line\n{SECRET}")])
        pg.copy("counters", [(7, "plain"), (9, f"back\\slash{SECRET}")])
        for table in ("heap", "moved"):
            pg.copy(table, [row[:2] for row in map(_kept_row, range(1, ROWS + 1))])
        yield pg


def _kept_row(i: int) -> tuple[Any, ...]:
    """Row ``i`` of ``kept``: the secret at the first and last rows and at part edges, among
    tabs, newlines, backslashes, NULLs and the text ``\\N``."""
    a = {1: SECRET, 500: f"x\t{SECRET}", 501: f"{SECRET}\n{SECRET}", ROWS: f"\\{SECRET}"}.get(i)
    b = {2: "\\N", 1499: f"n\n{SECRET}\t", 2999: SECRET}.get(i, f"value {i}")
    return (a if a is not None else (None if i % 7 == 0 else f"row\t{i}"), b, i)


def _sweep() -> SecretSweep:
    known = KnownSecrets()
    known.add(SECRET, "planted secret")
    return SecretSweep.from_known(known)


def _reference(pg: ScratchPostgres, table: str, key: str | None,
               columns: tuple[str, ...]) -> tuple[list[SweepHit], int]:
    """Each column read alone and each value searched alone: the hits (rows named by ``key``,
    else by ctid) and the bytes of the columns' own COPY text."""
    sweep, hits, size = _sweep(), [], 0
    with psycopg.connect(pg.dsn()) as conn, conn.cursor() as cursor:
        for column in columns:
            locator = key or "ctid"
            with cursor.copy(f"COPY (SELECT {locator}, {column} FROM {table}) TO STDOUT") as copy:
                for line in b"".join(bytes(block) for block in copy).split(b"\n")[:-1]:
                    row, value = line.split(b"\t")
                    size += len(value) + 1
                    hits += [SweepHit(h.label, f"postgres:{table}.{column}", h.offset, row.decode())
                             for h in sweep.scan_bytes(value, "")]
    return hits, size


def _observed(pg: ScratchPostgres, policy: Policy, tables: tuple[str, ...],
              sweep: SecretSweep | None = None) -> SweepReport:
    """The sweep of ``tables`` (for the planted secret, or ``sweep``), their columns listed by a
    session of its own (it holds their locks until it ends)."""
    with DatabaseProbe(pg.profile("t"), policy) as db:
        columns = tuple(c for c in db.visible_tables().columns if c.table in tables)
    with DatabaseProbe(pg.profile("t"), policy) as db:
        return sweep_database(db, sweep or _sweep(), SweepReport(), profile=pg.profile("t"),
                              policy=policy, columns=columns)


def _sweep_of(secret: str, label: str) -> SecretSweep:
    known = KnownSecrets()
    known.add(secret, label)
    return SecretSweep.from_known(known)


def _key(hit: SweepHit) -> tuple[str, str, int, str]:
    return hit.location, hit.row or "", hit.offset, hit.label


def _pages(pg: ScratchPostgres, table: str) -> int:
    return int(pg.psql(f"SELECT pg_relation_size('{table}') / 8192").strip())


def _recorded(monkeypatch: pytest.MonkeyPatch, part_pages: int) -> list[tuple[int, int]]:
    """Tables of 1 page and more are split, ``part_pages`` pages a part at most; the parts
    read (each on a session of its own) are listed as they start."""
    monkeypatch.setattr(database_sweep, "SPLIT_MIN_PAGES", 1)
    monkeypatch.setattr(database_sweep, "PART_PAGES", part_pages)
    parts: list[tuple[int, int]] = []
    real = database_sweep._sweep_pages
    monkeypatch.setattr(database_sweep, "_sweep_pages", lambda *args: parts.append(args[4])
                        or real(*args))
    return parts


@pytest.mark.parametrize(("jobs", "part_pages"), [(1, 65_536), (2, 65_536), (2, 4), (3, 2)])
def test_every_row_of_every_column_is_searched_whole_or_in_parts(
        scratch: ScratchPostgres, monkeypatch: pytest.MonkeyPatch, jobs: int, part_pages: int) -> None:
    # Given a 3,000-row table of some 30 pages, read in parts of part_pages pages at most
    parts = _recorded(monkeypatch, part_pages)
    # When it is swept with jobs workers (the policy's sample is not the sweep's)
    report = _observed(scratch, load_policy().with_scan(jobs=jobs, sample_rows=10), ("kept",))
    # Then every column of every row was searched, each hit where the column alone shows it,
    # in key order, and the bytes are the columns' own
    hits, size = _reference(scratch, "kept", "id", ("id", "a", "b", "n", "t"))
    assert sorted(map(_key, report.hits)) == sorted(map(_key, hits)) and len(hits) == 7
    assert report.hits_total == 7 and report.bytes_scanned == size
    assert report.locations == 5 and report.unreadable == []
    assert [int(h.row or 0) for h in report.hits] == sorted(int(h.row or 0) for h in report.hits)
    assert ("postgres:kept.b", "1499", 3) in {(h.location, h.row, h.offset) for h in report.hits}
    # And the table was read in the parts planned, together every page and the ones after
    pages = _pages(scratch, "kept")
    planned = database_sweep.page_parts(pages, jobs)
    assert sorted(parts) == (planned if len(planned) > 1 else [])
    assert len(planned) == max(jobs, -(-pages // part_pages)) and pages > 20
    assert [first for first, _ in planned] == [0, *(end for _, end in planned[:-1])]
    assert planned[-1][1] == database_sweep.LAST_PAGE_END


@pytest.mark.parametrize("part_pages", [65_536, 3])
def test_a_table_without_a_key_is_split_by_pages_its_rows_named_by_ctid(
        scratch: ScratchPostgres, monkeypatch: pytest.MonkeyPatch, part_pages: int) -> None:
    parts = _recorded(monkeypatch, part_pages)
    report = _observed(scratch, load_policy().with_scan(jobs=2), ("heap",))
    hits, size = _reference(scratch, "heap", None, ("a", "b"))
    # The ctid names the row but is neither searched nor counted
    assert sorted(map(_key, report.hits)) == sorted(map(_key, hits)) and len(hits) == 7
    assert report.bytes_scanned == size and report.locations == 2
    assert len(parts) == max(2, -(-_pages(scratch, "heap") // part_pages))


def test_a_row_moved_meanwhile_is_read_once_as_the_snapshot_has_it(
        scratch: ScratchPostgres, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the rows holding the secret, as they stand when the check exports its snapshot
    parts = _recorded(monkeypatch, 4)
    hits, _ = _reference(scratch, "moved", None, ("a", "b"))
    exported = DatabaseProbe.exported_snapshot

    @contextlib.contextmanager
    def then_moved(self: DatabaseProbe, *args: Any, **kwargs: Any) -> Iterator[str | None]:
        with exported(self, *args, **kwargs) as snapshot:
            # When they are updated (moved to the table's last page) before any part is read
            scratch.psql(f"UPDATE moved SET a = a || '' WHERE a LIKE '%{SECRET}%'"
                         f" OR b LIKE '%{SECRET}%'")
            yield snapshot

    monkeypatch.setattr(DatabaseProbe, "exported_snapshot", then_moved)
    report = _observed(scratch, load_policy().with_scan(jobs=2), ("moved",))
    # Then every part read the snapshot: each row once, where it stood (its ctid then)
    assert len(parts) > 2
    assert sorted(map(_key, report.hits)) == sorted(map(_key, hits)) and len(hits) == 7
    moved_to = _reference(scratch, "moved", None, ("a", "b"))[0]
    assert {h.row for h in moved_to}.isdisjoint({h.row for h in hits})


@pytest.mark.parametrize(("table", "key", "columns", "rows"), [
    ("loose", None, ("a", "b"), {"(0,2)", "(0,3)"}),
    ("named", None, ("code", "note"), {"(0,1)", "(0,2)"}),
    ("counters", "brand_id", ("brand_id", "note"), {"9"}),
])
def test_a_rows_name_is_its_integer_primary_key_else_its_ctid(
        scratch: ScratchPostgres, table: str, key: str | None, columns: tuple[str, ...],
        rows: set[str]) -> None:
    report = _observed(scratch, load_policy(), (table,))
    hits, size = _reference(scratch, table, key, columns)
    # The ctid names the row but is neither searched nor counted
    assert sorted(map(_key, report.hits)) == sorted(map(_key, hits))
    assert {h.row for h in report.hits} == rows and report.bytes_scanned == size
    assert report.locations == len(columns)


def test_parts_read_the_snapshot_the_check_exported(scratch: ScratchPostgres) -> None:
    with DatabaseProbe(scratch.profile("t"), load_policy()) as db, \
            DatabaseProbe(scratch.profile("t"), load_policy()) as part, \
            db.exported_snapshot() as snapshot:
        assert snapshot is not None
        # Given a row written and committed after the snapshot was taken
        scratch.psql("INSERT INTO loose VALUES ('late', 'late')")
        try:
            # Then a read in the snapshot does not see it, and a read of its own does
            seen = b"".join(part.copy_rows("loose", ("a",), key="ctid", snapshot=snapshot))
            now = b"".join(part.copy_rows("loose", ("a",), key="ctid"))
        finally:
            scratch.psql("DELETE FROM loose WHERE a = 'late'")
    assert b"late" not in seen and b"late" in now


def test_a_server_that_exports_no_snapshot_is_read_in_one_session(
        scratch: ScratchPostgres, monkeypatch: pytest.MonkeyPatch) -> None:
    parts = _recorded(monkeypatch, 2)

    @contextlib.contextmanager
    def refused(self: DatabaseProbe, *args: Any, **kwargs: Any) -> Iterator[str | None]:
        yield None

    monkeypatch.setattr(DatabaseProbe, "exported_snapshot", refused)
    report = _observed(scratch, load_policy().with_scan(jobs=2), ("kept",))
    assert report.hits_total == 7 and report.locations == 5 and parts == []


def _short(command_s: float) -> Policy:
    policy = load_policy()
    return policy.model_copy(update={"timeouts": policy.timeouts.model_copy(
        update={"connect_s": 2, "request_s": 2, "command_s": command_s})})


def test_a_part_that_overruns_its_time_is_an_error_naming_it(
        scratch: ScratchPostgres, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given another session asking for the table exclusively (a rewrite) once its pages are
    # counted: it waits, the check holding the table, and the parts' reads queue behind it
    _recorded(monkeypatch, 65_536)
    locker = psycopg.connect(scratch.dsn())
    locker.execute("SET lock_timeout = '10s'")
    counted = DatabaseProbe.page_span
    asking = threading.Thread(target=lambda: locker.execute("LOCK TABLE kept IN ACCESS EXCLUSIVE MODE"))

    def then_asked(self: DatabaseProbe, *args: Any, **kwargs: Any) -> int | None:
        pages = counted(self, *args, **kwargs)
        asking.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not waiting():
            time.sleep(0.05)
        return pages

    def waiting() -> bool:
        return scratch.psql("SELECT count(*) FROM pg_locks WHERE relation = 'kept'::regclass"
                            " AND mode = 'AccessExclusiveLock' AND NOT granted").strip() == "1"

    monkeypatch.setattr(DatabaseProbe, "page_span", then_asked)
    # When its parts are read within 0.5 s each
    started = time.monotonic()
    try:
        with pytest.raises(ProbeError) as caught:
            _observed(scratch, _short(0.5).with_scan(jobs=2), ("kept",))
    finally:
        elapsed = time.monotonic() - started
        asking.join()
        locker.close()
    # Then the rewrite waited for the check, and the sweep ends with the part's read named
    assert not asking.is_alive() and elapsed < 8
    assert re.fullmatch(r"reading kept\.a, kept\.b, kept\.n, kept\.t exceeded 0\.5 s "
                        r"\(kept pages \d+\.\.\d*\)", str(caught.value)), caught.value


def test_a_part_that_cannot_read_the_snapshot_is_an_error_naming_it(
        scratch: ScratchPostgres, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given parts told a snapshot that was never exported
    _recorded(monkeypatch, 65_536)
    exported = DatabaseProbe.exported_snapshot

    @contextlib.contextmanager
    def gone(self: DatabaseProbe, *args: Any, **kwargs: Any) -> Iterator[str | None]:
        with exported(self, *args, **kwargs) as snapshot:
            yield f"{snapshot}9"

    monkeypatch.setattr(DatabaseProbe, "exported_snapshot", gone)
    # Then the sweep ends with the error of a part, named by its pages
    with pytest.raises(ProbeError, match=r"^cannot read kept\.a, kept\.b, kept\.n, kept\.t: "
                                         r"invalid snapshot identifier: .* \(kept pages \d+\.\.\d*\)$"):
        _observed(scratch, load_policy().with_scan(jobs=2), ("kept",))


def test_a_table_read_once_that_overruns_its_time_is_an_error(
        scratch: ScratchPostgres, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a table without a key, locked by another session just before it is read
    with psycopg.connect(scratch.dsn()) as locker:
        read = database_sweep.sweep_part

        def locked_first(*args: Any, **kwargs: Any) -> SweepReport:
            locker.execute("LOCK TABLE loose IN ACCESS EXCLUSIVE MODE")
            return read(*args, **kwargs)

        monkeypatch.setattr(database_sweep, "sweep_part", locked_first)
        # Then its one read ends at command_s, named
        with pytest.raises(ProbeError, match=r"^reading loose\.a, loose\.b exceeded 0\.5 s$"):
            _observed(scratch, _short(0.5), ("loose",))


def test_a_session_cut_while_exporting_its_snapshot_ends_the_sweep_with_that_reason(
        scratch: ScratchPostgres, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the check's session cut at its deadline while it exports its snapshot
    def cut(self: DatabaseProbe, query: Any, params: Any = ()) -> tuple[Any, ...]:
        if "pg_export_snapshot" in str(query):
            self.close()
            self._conn = None
            raise ProbeError("the database did not finish answering within the policy's 2 s")
        return real(self, query, params)

    real = DatabaseProbe._one
    monkeypatch.setattr(DatabaseProbe, "_one", cut)
    # Then the sweep ends with that reason, not a later "not connected"
    with pytest.raises(ProbeError, match="did not finish answering within the policy's 2 s"):
        _observed(scratch, load_policy(), ("loose",))


def test_a_secret_holding_a_backslash_or_control_characters_is_found_as_copy_escapes_it(
        scratch: ScratchPostgres) -> None:
    # COPY writes a value's backslash and tab as \\ and \t: the stored secret is only in the
    # stream in that form, so the sweep searches it too (same label, offset in the field's text).
    awkward = "pass\\word\twith-tab-and\nline"
    scratch.psql("CREATE TABLE awkward (id int PRIMARY KEY, note text);"
                 " GRANT SELECT ON awkward TO auditor")
    scratch.copy("awkward", [(1, "nothing here"), (2, f"x{awkward}"), (3, awkward[:-4])])
    report = _observed(scratch, load_policy(), ("awkward",), _sweep_of(awkward, "awkward secret"))
    assert [(h.location, h.row, h.offset, h.label) for h in report.hits] == [
        ("postgres:awkward.note", "2", 1, "awkward secret (raw)")]


def test_a_secret_holding_a_backslash_does_not_match_the_escape_of_another_value(
        scratch: ScratchPostgres) -> None:
    # Given a secret with a literal backslash-t, and a stored value with a real tab there
    # (COPY writes it as backslash-t: the raw secret matched it, a FAIL on another value)
    literal = "key\\twith-a-literal-backslash-t"
    scratch.psql("CREATE TABLE tabbed (id int PRIMARY KEY, note text);"
                 " GRANT SELECT ON tabbed TO auditor")
    scratch.copy("tabbed", [(1, literal.replace("\\t", "\t")), (2, f"y{literal}")])
    report = _observed(scratch, load_policy(), ("tabbed",), _sweep_of(literal, "literal secret"))
    # Then only the value that holds the secret is a hit
    assert [(h.row, h.offset, h.label) for h in report.hits] == [("2", 1, "literal secret (raw)")]


@pytest.mark.parametrize(("grant", "row"), [("note", None), ("id, note", "1")])
def test_a_table_granted_only_some_columns_is_swept_its_rows_named_where_they_can_be(
        scratch: ScratchPostgres, grant: str, row: str | None) -> None:
    # Given a table the auditor may read only some columns of: without its key it may not read
    # the ctid either, which named the rows (the reviewer's repro: the whole sweep was an ERROR)
    scratch.psql(f"DROP TABLE IF EXISTS granted; CREATE TABLE granted (id bigint PRIMARY KEY,"
                 f" note text, hidden text); GRANT SELECT ({grant}) ON granted TO auditor;"
                 f" INSERT INTO granted VALUES (1, 'x {SECRET}', 'h'), (2, 'clean', 'h')")
    report = _observed(scratch, load_policy(), ("granted",))
    # Then the columns it may read are swept, the rows named by their key where it may read it
    assert [(h.location, h.row, h.offset) for h in report.hits] == [
        ("postgres:granted.note", row, 2)]
    assert report.locations == len(grant.split(", ")) and report.bytes_scanned > 0


def test_a_schema_change_during_the_sweep_ends_it_at_once_instead_of_blocking_the_service(
        scratch: ScratchPostgres, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the sweep of a table in parts (the check's session holding the table), and the
    # service's migration (an ALTER TABLE with no lock timeout) asked for before the second part
    _recorded(monkeypatch, 2)
    waited = during_the_nth_read(monkeypatch, scratch, {"alter": "ALTER TABLE heap ADD COLUMN extra text"})
    policy = with_command_s(load_policy().with_scan(jobs=1), 60.0)
    # When it is swept
    started = time.monotonic()
    with pytest.raises(ProbeError, match="another session waits to rewrite or alter the table"):
        _observed(scratch, policy, ("heap",))
    # Then the sweep gave way in about a second, not command_s's 60, and the migration went on
    assert time.monotonic() - started < 10
    assert waited_for(waited, 1)["alter"] < 5, waited
    scratch.psql("ALTER TABLE heap DROP COLUMN extra")
