"""The database probe against a scratch PostgreSQL 15 cluster started for these tests.

No reference service is needed: the cluster is made here with a service role
owning the tables, a SELECT-only auditor role, and a table the auditor cannot read.
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from scratch_postgres import INSTALLED, ScratchPostgres, scratch_postgres

from harness.formats.copy_text import copy_text_rows
from harness.outcomes import ProbeError
from harness.policy import load_policy
from harness.probes import database as database_probe
from harness.probes.database import DatabaseProbe
from harness.probes.database_sweep import sweep_database
from harness.probes.pg_reads import copy_blocks
from harness.profile import TargetProfile, parse_profile
from harness.redaction import KnownSecrets
from harness.sweep import SecretSweep, SweepReport

AUDITOR_PASSWORD = "auditor-Scratch-pw-123"
APP_PASSWORD = "app-Scratch-pw-456"
PLANTED = "planted-plaintext-secret-789"

pytestmark = pytest.mark.skipif(not INSTALLED, reason="PostgreSQL 15 not installed")


@pytest.fixture(scope="module")
def scratch_pg() -> Iterator[ScratchPostgres]:
    with scratch_postgres("atrest-pg-", auth=("--auth-local=trust", "--auth-host=scram-sha-256"),
                          listen="127.0.0.1") as pg:
        pg.psql(f"""
            CREATE ROLE app LOGIN PASSWORD '{APP_PASSWORD}';
            CREATE ROLE auditor LOGIN PASSWORD '{AUDITOR_PASSWORD}';
            GRANT CREATE, USAGE ON SCHEMA public TO app;
            SET ROLE app;
            CREATE TABLE owners (id bigserial PRIMARY KEY, note text);
            CREATE TABLE items (id bigserial PRIMARY KEY,
                                owner_id bigint REFERENCES owners(id), value text);
            CREATE TABLE hidden (id bigserial PRIMARY KEY, secret text);
            INSERT INTO owners (note) VALUES ('{PLANTED}'), ('nothing');
            INSERT INTO items (owner_id, value)
                SELECT 2, 'value-' || g FROM generate_series(1, 200000) g;
            GRANT SELECT ON owners, items TO auditor;
        """)
        yield pg


def _profile(pg: ScratchPostgres, tmp_path: Path, user: str, password: str,
             allow_write: bool = False) -> TargetProfile:
    secret = tmp_path / f"{user}-password"
    secret.write_text(password + "\n")
    secret.chmod(0o600)
    return parse_profile(f"""
name = "scratch"
[edge]
host = "votriz.test"
[database]
dsn = "host=127.0.0.1 port={pg.port} dbname=votriz user={user}"
password = {{ file = "{secret}" }}
allow_write_role = {str(allow_write).lower()}
""")


def test_auditor_role_connects_read_only(scratch_pg: ScratchPostgres, tmp_path: Path) -> None:
    known = KnownSecrets()
    with DatabaseProbe(_profile(scratch_pg, tmp_path, "auditor", AUDITOR_PASSWORD), load_policy(),
                       known_secrets=known) as probe:
        assert probe.server is not None
        assert probe.server.major == 15 and probe.server.role == "auditor"
        assert probe.write_privileges() == {}
    assert AUDITOR_PASSWORD.encode() in dict(known.items())


def test_role_that_can_write_is_refused(scratch_pg: ScratchPostgres, tmp_path: Path) -> None:
    with pytest.raises(ProbeError) as caught:
        DatabaseProbe(_profile(scratch_pg, tmp_path, "app", APP_PASSWORD), load_policy()).open()
    message = str(caught.value)
    assert "the auditor role 'app' can write 3 of the service's tables" in message
    assert "public.hidden (DELETE/INSERT/TRUNCATE/UPDATE)" in message
    assert "database.allow_write_role = true" in message


def test_write_role_allowed_when_the_profile_says_so(scratch_pg: ScratchPostgres, tmp_path: Path) -> None:
    profile = _profile(scratch_pg, tmp_path, "app", APP_PASSWORD, allow_write=True)
    with DatabaseProbe(profile, load_policy()) as probe:
        assert probe.server is not None and probe.server.role == "app"


def test_wrong_password_is_a_probe_error_without_the_password(scratch_pg: ScratchPostgres,
                                                             tmp_path: Path) -> None:
    with pytest.raises(ProbeError) as caught:
        DatabaseProbe(_profile(scratch_pg, tmp_path, "auditor", "wrong-password-xyz"),
                      load_policy()).open()
    assert "cannot connect to the database" in str(caught.value)
    assert "wrong-password-xyz" not in str(caught.value)


def test_visible_tables_and_blind_spots(scratch_pg: ScratchPostgres, tmp_path: Path) -> None:
    with DatabaseProbe(_profile(scratch_pg, tmp_path, "auditor", AUDITOR_PASSWORD),
                       load_policy()) as probe:
        seen = probe.visible_tables()
    names = [column.name for column in seen.columns]
    assert names == ["items.id", "items.owner_id", "items.value", "owners.id", "owners.note"]
    owner_id = next(c for c in seen.columns if c.name == "items.owner_id")
    assert owner_id.is_foreign_key and not owner_id.is_primary_key
    assert seen.unreadable_tables == ("public.hidden",)
    assert seen.row_counts == {"public.items": 200000, "public.owners": 2}


def test_stream_column_keeps_memory_flat(scratch_pg: ScratchPostgres, tmp_path: Path) -> None:
    with DatabaseProbe(_profile(scratch_pg, tmp_path, "auditor", AUDITOR_PASSWORD),
                       load_policy()) as probe:
        tracemalloc.start()
        rows = batches = 0
        for batch in probe.stream_column("items", "value", batch_rows=5000):
            rows += len(batch)
            batches += 1
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert (rows, batches) == (200000, 40)
    # 5000 short rows a batch: a few MiB at most, whatever the table's size.
    assert peak < 8 * 1024 * 1024


def test_a_read_over_its_time_is_a_probe_error(scratch_pg: ScratchPostgres, tmp_path: Path) -> None:
    # Given a whole read may take command_s (0.5 s here), When a read takes 2 s
    policy = load_policy().model_copy(update={"timeouts": load_policy().timeouts.model_copy(
        update={"connect_s": 0.5, "request_s": 0.5, "command_s": 0.5})})
    profile = _profile(scratch_pg, tmp_path, "auditor", AUDITOR_PASSWORD)
    with DatabaseProbe(profile, policy) as probe:
        started = time.monotonic()
        with pytest.raises(ProbeError) as caught:
            list(probe.stream_column("owners", "note", where="pg_sleep(1) IS NOT NULL"))
        # Then it is stopped at its limit, named, and the session still works
        assert time.monotonic() - started < 1.5
        assert str(caught.value) == "reading owners.note exceeded 0.5 s"
        assert [v for batch in probe.stream_column("owners", "note") for _, v in batch]


def test_the_sweep_reads_every_table_over_sessions_that_log_in(scratch_pg: ScratchPostgres,
                                                               tmp_path: Path) -> None:
    # Given the auditor logging in with its password, and items (200,000 rows) read in parts
    known = KnownSecrets()
    known.add(PLANTED, "planted secret")
    sweep = SecretSweep.from_known(known)
    profile = _profile(scratch_pg, tmp_path, "auditor", AUDITOR_PASSWORD)
    policy = load_policy().with_scan(jobs=2)
    with DatabaseProbe(profile, policy) as probe:
        report = sweep_database(probe, sweep, SweepReport(), profile=profile, policy=policy)
    # Then every column of both readable tables was searched, the secret found where it is
    assert [h.describe() for h in report.hits] == ["planted secret (raw) at postgres:owners.note "
                                                  "row 1, byte 0"]
    assert report.locations == 5 and report.bytes_scanned > 200000


def test_copy_rows_come_in_blocks_of_whole_lines(scratch_pg: ScratchPostgres, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # Given blocks of about 64 KiB, When a 200,000-row column is read through COPY
    monkeypatch.setattr(database_probe, "COPY_BLOCK_BYTES", 1 << 16)
    with DatabaseProbe(_profile(scratch_pg, tmp_path, "auditor", AUDITOR_PASSWORD),
                       load_policy()) as probe:
        blocks = list(probe.copy_rows("items", ("value",)))
        whole = b"".join(blocks)
        values = [(i, v) for batch in probe.stream_column("items", "value") for i, v in batch]
    # Then each block ends a line, all but the last reach the size, and the lines
    # are the rows' keys and values, in the table's order
    assert len(blocks) > 10 and all(b.endswith(b"\n") for b in blocks)
    assert all(len(b) >= 1 << 16 for b in blocks[:-1]) and max(map(len, blocks)) < 1 << 17
    assert whole.decode().splitlines() == [f"{i}\t{v}" for i, v in values]


AWKWARD = ["tab\there", "new\nline", "back\\slash", "\\N", None, "", "é-ü ✓", "cr\rlf\n",
           "\b\f\v", "\\\\t", "plain"]


@pytest.fixture(scope="module")
def awkward(scratch_pg: ScratchPostgres) -> str:
    """A table of values that COPY's text format must escape (a NULL, the text backslash-N)."""
    scratch_pg.psql("CREATE TABLE awkward (id bigserial PRIMARY KEY, v text, w text);"
                    " GRANT SELECT ON awkward TO auditor")
    with psycopg.connect(scratch_pg.dsn(), autocommit=True) as conn:
        conn.cursor().executemany("INSERT INTO awkward (v, w) VALUES (%s, %s)",
                                  [(v, AWKWARD[-1 - i]) for i, v in enumerate(AWKWARD)])
    return "awkward"


def test_copy_rows_read_back_every_value_exactly(scratch_pg: ScratchPostgres, tmp_path: Path,
                                                 awkward: str) -> None:
    with DatabaseProbe(_profile(scratch_pg, tmp_path, "auditor", AUDITOR_PASSWORD),
                       load_policy()) as db:
        # When they are read through COPY in blocks, as the column scans read them
        rows = [row for block in db.copy_rows("awkward", ("v", "w", None), stored_bytes=True)
                for row in copy_text_rows(block)]
        ranged = [row for block in db.copy_rows("awkward", ("v",), low=3, high=5)
                  for row in copy_text_rows(block)]
        expected = [(i, v, w) for batch in db.stream_rows("awkward", ("v", "w"), text_as_bytes=True)
                    for i, v, w in batch]
    # Then every value is what a plain SELECT returns, bytes for bytes, NULL as None
    assert [(int(r[0]), r[1], r[2]) for r in rows] == expected
    assert {r[3] for r in rows} == {None}
    assert [int(r[0]) for r in ranged] == [3, 4, 5]


def test_key_bounds_planned_rows_and_a_bernoulli_sample(scratch_pg: ScratchPostgres,
                                                      tmp_path: Path) -> None:
    scratch_pg.psql("ANALYZE items")
    with DatabaseProbe(_profile(scratch_pg, tmp_path, "auditor", AUDITOR_PASSWORD),
                       load_policy()) as db:
        assert db.key_bounds("items") == (1, 200_000, False)
        assert db.planned_rows("items") == 200_000 == db.count_rows("items")
        assert db.key_bounds("items", "value") is None
        # A 1% sample: each row drawn with probability 0.01 (2000 expected, sd 44)
        drawn = [int(r[0]) for block in db.copy_rows("items", ("value",), sample_percent=1.0)
                 for r in copy_text_rows(block)]
    assert 1_700 < len(drawn) < 2_300 and len(set(drawn)) == len(drawn)
    # Spread over the whole key range, not a block of it: each tenth holds some
    assert len({(row - 1) // 20_000 for row in drawn}) == 10


@pytest.mark.parametrize(("statement", "error"), [
    # An error after thousands of rows were sent, and a statement timeout mid-COPY
    ("SELECT g, 1 / (g - 5000) FROM generate_series(1, 10000) g", psycopg.errors.DivisionByZero),
    ("SELECT g, pg_sleep(CASE WHEN g = 5000 THEN 2 ELSE 0 END) FROM generate_series(1, 10000) g",
     psycopg.errors.QueryCanceled)])
def test_copy_blocks_raise_the_servers_error_and_the_session_goes_on(
        scratch_pg: ScratchPostgres, statement: str, error: type[Exception]) -> None:
    with psycopg.connect(scratch_pg.dsn()) as conn:
        conn.execute("SET statement_timeout = 500")
        rows = 0
        with pytest.raises(error), conn.cursor() as cursor:
            for block in copy_blocks(cursor, f"COPY ({statement}) TO STDOUT",
                                                    1 << 10):
                rows += block.count(b"\n")
        assert 1000 < rows < 5000
        conn.rollback()
        assert conn.execute("SELECT 42").fetchone() == (42,)


def test_copy_blocks_stopped_early_leave_the_session_usable(scratch_pg: ScratchPostgres) -> None:
    with psycopg.connect(scratch_pg.dsn()) as conn:
        with conn.cursor() as cursor:
            blocks = copy_blocks(
                cursor, "COPY (SELECT g FROM generate_series(1, 500000) g) TO STDOUT", 1 << 10)
            first = next(blocks)
            blocks.close()
        assert first.startswith(b"1\n2\n") and first.endswith(b"\n") and len(first) >= 1 << 10
        conn.rollback()
        assert conn.execute("SELECT 42").fetchone() == (42,)
        # And a whole read gives every row, in blocks of whole lines
        with conn.cursor() as cursor:
            blocks = list(copy_blocks(
                cursor, "COPY (SELECT g FROM generate_series(1, 50000) g) TO STDOUT", 1 << 12))
        assert all(b.endswith(b"\n") for b in blocks) and len(blocks) > 10
        assert b"".join(blocks).split() == [str(g).encode() for g in range(1, 50001)]
