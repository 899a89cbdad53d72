"""The joined read of a hash column (pg_reads.joined_chunks through DatabaseProbe.joined_column
and passwords.classify_hash_part) against a scratch PostgreSQL 15: only over a key that alone
identifies a row, with a joined text bounded whatever the values' sizes, and with the errors of
a chunk read again handled as the probe's own; the password scan's threads stopped early by a
failing range. And the rows whose id is NULL (in no key range) read as one more part, by the
password and token scans alike.

The "old path" the verdicts are compared with is the range ``COPY`` classified row by row
(``range_workers.classify_hash_range``), which the check used before the joined chunks.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql
from scratch_postgres import INSTALLED, ScratchPostgres, scratch_postgres

from checks.at_rest.password_hashes import password_hashes_verdict
from checks.at_rest.tokens_fernet import tokens_fernet_verdict
from harness import parallel_scan
from harness.column_scans import HashTally
from harness.formats import fernet_engine
from harness.formats.fernet import FernetKey, encrypt_fernet_token
from harness.outcomes import ProbeError
from harness.policy import Policy, load_policy
from harness.probes import database as database_probe
from harness.probes import pg_reads, stored_tokens
from harness.probes.database import DatabaseProbe
from harness.probes.passwords import classify_hash_part, observe_passwords
from harness.probes.range_workers import RangeRead, classify_hash_range
from harness.probes.stored_tokens import observe_tokens
from harness.redaction import KnownSecrets

SALT = "CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW"
GOOD, COST4 = f"$2b$12${SALT}", f"$2b$04${SALT}"
ROOT = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.skipif(not INSTALLED, reason="PostgreSQL 15 not installed")


@pytest.fixture(scope="module")
def scratch() -> Iterator[ScratchPostgres]:
    with scratch_postgres("pgreads-pg-") as pg:
        pg.psql("CREATE ROLE auditor LOGIN")
        yield pg


def _table(pg: ScratchPostgres, name: str, columns: str,
           rows: list[tuple[int | None, str | None]]) -> None:
    pg.psql(f"DROP TABLE IF EXISTS {name} CASCADE; CREATE TABLE {name} ({columns});"
            f" GRANT SELECT ON {name} TO auditor")
    pg.copy(name, rows)


def _old_path(pg: ScratchPostgres, policy: Policy, table: str) -> HashTally:
    """What classify_hash_range does (a range COPY, row by row), for any table."""
    tally = HashTally(policy.bcrypt.cost)
    with DatabaseProbe(pg.profile("t"), policy) as db:
        for block in db.copy_rows(table, ("password_hash",)):
            tally.add_copy_block(block)
    return tally


DUPLICATED = [(1, GOOD), (2, GOOD), (3, GOOD), (3, "hunter2"), (3, COST4), (4, GOOD), (5, GOOD)]


@pytest.mark.parametrize("jobs", [1, 2])
def test_an_id_that_is_not_unique_is_read_as_before_and_the_fail_stays(
        scratch: ScratchPostgres, monkeypatch: pytest.MonkeyPatch, jobs: int) -> None:
    # Given users without a primary key, three rows sharing id 3 (one plaintext, one cost 4),
    # and chunks of 3 rows (keyset paging would go on after id 3 and never read two of them)
    monkeypatch.setattr(pg_reads, "JOINED_CHUNK_ROWS", 3)
    monkeypatch.setattr(parallel_scan, "PARALLEL_MIN_ROWS", 1)
    _table(scratch, "users", "id bigint, password_hash text", DUPLICATED)
    policy = load_policy().with_scan(jobs=jobs)
    keyset: list[int] = []
    monkeypatch.setattr(database_probe, "joined_chunks",
                        lambda *a, **k: keyset.append(1) or pg_reads.joined_chunks(*a, **k))
    # When the check observes them, and when one part is classified on its own
    obs = observe_passwords(scratch.profile("t"), policy, KnownSecrets(), None, "none")
    part = classify_hash_part(scratch.profile("t"), policy, KnownSecrets(), 1, 5)
    # Then every row is judged as the range COPY judges it, and the check FAILs naming both
    old = classify_hash_range(RangeRead(scratch.profile("t"), policy, 1, 5, None))
    assert obs.scan == part.scan("users.password_hash") == old.scan("users.password_hash")
    assert obs.scan.rows == 7 and obs.scan.schemes["plaintext_like"] == 1
    assert obs.scan.costs == {12: 5, 4: 1} and obs.scan.cost_examples == ("row 3: cost 4",)
    verdict = password_hashes_verdict(obs, policy)
    assert verdict.outcome.value == "FAIL" and "row 3: plaintext_like" in verdict.message
    # And no keyset query ran: a table without an index is never scanned once a chunk
    assert keyset == []


@pytest.mark.parametrize(("columns", "index", "unique"), [
    ("id bigint PRIMARY KEY, password_hash text", "", True),
    ("id bigint NOT NULL, password_hash text", "CREATE UNIQUE INDEX ON {t} (id)", True),
    ("id int NOT NULL, password_hash text", "CREATE UNIQUE INDEX ON {t} (id) INCLUDE (password_hash)",
     True),
    ("id bigint, password_hash text", "", False),
    ("id bigint UNIQUE, password_hash text", "", False),  # NULL ids: never reached by paging
    ("id bigint NOT NULL, password_hash text", "CREATE INDEX ON {t} (id)", False),
    ("id bigint NOT NULL, password_hash text", "CREATE UNIQUE INDEX ON {t} (id, password_hash)",
     False),
    ("id bigint NOT NULL, password_hash text", "CREATE UNIQUE INDEX ON {t} (id) WHERE id > 2",
     False),
    ("id bigint NOT NULL, password_hash text", "CREATE UNIQUE INDEX ON {t} ((id + 0))", False),
    ("id bigint PRIMARY KEY, password_hash text",
     "CREATE TABLE {t}_child () INHERITS ({t}); GRANT SELECT ON {t}_child TO auditor;"
     " INSERT INTO {t}_child VALUES (3, 'hunter2')", False),
])
def test_only_a_key_alone_under_a_valid_unique_index_is_paged(
        scratch: ScratchPostgres, monkeypatch: pytest.MonkeyPatch, columns: str, index: str,
        unique: bool) -> None:
    # Given a table of distinct ids, its key under the index described (or none)
    monkeypatch.setattr(pg_reads, "JOINED_CHUNK_ROWS", 3)
    rows = [(i, COST4 if i == 4 else "hunter2" if i == 6 else GOOD) for i in range(1, 9)]
    _table(scratch, "keyed", columns, rows)
    if index:
        scratch.psql(index.format(t="keyed"))
    policy = load_policy()
    with DatabaseProbe(scratch.profile("t"), policy) as db:
        # When the probe is asked whether the key alone identifies a row, Then it says so
        assert db.key_is_unique("keyed") is unique
    # And the part is classified as the range COPY classifies it either way
    part = classify_hash_part(scratch.profile("t"), policy, KnownSecrets(), None, None,
                              column=("keyed", "password_hash"))
    assert part.scan("c") == _old_path(scratch, policy, "keyed").scan("c")


def test_a_partitioned_table_and_an_invalid_index(scratch: ScratchPostgres) -> None:
    # Given a table partitioned by id with its primary key (unique over every partition)
    scratch.psql("DROP TABLE IF EXISTS parted CASCADE; CREATE TABLE parted (id bigint PRIMARY KEY,"
                 " password_hash text) PARTITION BY RANGE (id);"
                 " CREATE TABLE parted_a PARTITION OF parted FOR VALUES FROM (0) TO (100);"
                 " CREATE TABLE parted_b PARTITION OF parted FOR VALUES FROM (100) TO (200);"
                 " GRANT SELECT ON parted TO auditor")
    # And one whose unique index was left invalid by a build that met duplicates
    _table(scratch, "broken", "id bigint NOT NULL, password_hash text", DUPLICATED)
    with pytest.raises(subprocess.CalledProcessError):
        scratch.psql("CREATE UNIQUE INDEX CONCURRENTLY broken_id ON broken (id)")
    assert scratch.psql("SELECT indisvalid FROM pg_index WHERE indexrelid = 'broken_id'::regclass"
                        ).strip() == "f"
    with DatabaseProbe(scratch.profile("t"), load_policy()) as db:
        # Then the first is paged and the second is not
        assert db.key_is_unique("parted") and not db.key_is_unique("broken")
    part = classify_hash_part(scratch.profile("t"), load_policy(), KnownSecrets(), None, None,
                              column=("broken", "password_hash"))
    assert part.rows == 7 and part.schemes["plaintext_like"] == 1


def test_a_unique_key_is_paged_and_says_what_the_range_copy_says(
        scratch: ScratchPostgres, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a unique (not primary) key and chunks of 4 rows, clean ones and dirty ones,
    # values of 60 octets that are not bcrypt, NULLs and long values among them
    monkeypatch.setattr(pg_reads, "JOINED_CHUNK_ROWS", 4)
    odd = [None, "é" * 30, "x" * 60, "hunter2", "a" * 5000, COST4, f"$2b$12${SALT[:-1]}é"]
    rows = [(i * 3, odd[(i // 9) % len(odd)] if i % 9 == 0 else GOOD) for i in range(400)]
    _table(scratch, "unique_users", "id bigint NOT NULL UNIQUE, password_hash text", rows)
    taken: list[pg_reads.JoinedChunk] = []
    joined = DatabaseProbe.joined_column

    def spying(self: DatabaseProbe, *args: Any, take: Any, **kwargs: Any) -> Iterator[bytes]:
        return joined(self, *args, take=lambda c: take(c) and not taken.append(c), **kwargs)

    monkeypatch.setattr(DatabaseProbe, "joined_column", spying)
    policy = load_policy()
    # When a part is classified
    part = classify_hash_part(scratch.profile("t"), policy, KnownSecrets(), 30, 1100,
                              column=("unique_users", "password_hash"))
    # Then it says what the range COPY of the same rows says, and most chunks were taken whole
    expected = HashTally(policy.bcrypt.cost)
    expected.add([row for row in rows if 30 <= row[0] <= 1100])
    assert part.scan("c") == expected.scan("c") and part.rows == 357
    assert 40 < len(taken) < 90 and all(c.joined.count(b"\n") == c.rows == c.values for c in taken)


_CHILD = """
import json, resource, sys
from harness.column_scans import HashTally
from harness.policy import load_policy
from harness.probes.database import DatabaseProbe
from harness.probes.passwords import classify_hash_part
from harness.profile import parse_profile
from harness.redaction import KnownSecrets
profile, how = parse_profile(sys.argv[1]), sys.argv[2]
policy = load_policy()
with DatabaseProbe(profile, policy) as db:
    db.key_bounds("big_values")
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if how == "joined":
    tally = classify_hash_part(profile, policy, KnownSecrets(), None, None,
                               column=("big_values", "password_hash"))
else:
    tally = HashTally(policy.bcrypt.cost)
    with DatabaseProbe(profile, policy) as db:
        for block in db.copy_rows("big_values", ("password_hash",)):
            tally.add_copy_block(block)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
scan = tally.scan("c")
print(json.dumps({"grew_kib": after - before, "peak_kib": after, "rows": scan.rows,
                  "schemes": scan.schemes, "examples": scan.examples}))
"""


def _child_read(pg: ScratchPostgres, how: str) -> dict[str, Any]:
    profile = f'name = "t"\n[edge]\nhost = "votriz.test"\n[database]\ndsn = "{pg.dsn("auditor")}"\n'
    done = subprocess.run([sys.executable, "-c", _CHILD, profile, how], cwd=ROOT, check=True,
                          capture_output=True, text=True, timeout=600)
    return dict(json.loads(done.stdout))


def test_long_values_are_not_joined_and_memory_stays_bounded(scratch: ScratchPostgres) -> None:
    # Given a full chunk (16,384 rows) of 16,000-character values: 262 MB as text (joined by
    # the server, with the copies psycopg and Python make of it, over 1 GB of memory)
    scratch.psql("DROP TABLE IF EXISTS big_values; CREATE TABLE big_values"
                 " (id bigint PRIMARY KEY, password_hash text);"
                 " INSERT INTO big_values SELECT g, repeat(md5(g::text), 500)"
                 " FROM generate_series(1, 16384) g; GRANT SELECT ON big_values TO auditor")
    # When the check's read classifies it in a child process, and the range COPY does
    joined, old = _child_read(scratch, "joined"), _child_read(scratch, "copy")
    # Then both say the same of every row, and the check's read grew by no more than 64 MiB
    # (measured: 72 MiB peak either way; the values joined: 1,315 MiB)
    assert {k: v for k, v in joined.items() if "kib" not in k} \
        == {k: v for k, v in old.items() if "kib" not in k}
    assert joined["rows"] == 16_384 and joined["schemes"] == {"plaintext_like": 16_384}
    assert joined["grew_kib"] < 64 * 1024 and joined["peak_kib"] < old["peak_kib"] + 16 * 1024


@pytest.mark.parametrize(("slow", "message"), [
    ("pg_sleep(3) IS NOT NULL", "reading slow_rereads.password_hash exceeded 1 s"),
    ("1 / (id - id) = 1", "cannot read slow_rereads.password_hash: division by zero"),
])
def test_a_chunk_read_again_fails_as_the_probe_s_own_error(
        scratch: ScratchPostgres, monkeypatch: pytest.MonkeyPatch, slow: str, message: str) -> None:
    # Given chunks of 3 rows, a plaintext value in the second, and a read again that the server
    # ends (a statement timeout of command_s = 1 s, or an error)
    monkeypatch.setattr(pg_reads, "JOINED_CHUNK_ROWS", 3)
    _table(scratch, "slow_rereads", "id bigint PRIMARY KEY, password_hash text",
           [(i, "hunter2" if i == 5 else GOOD) for i in range(1, 10)])
    copy = pg_reads.range_copy

    def slowed(table: str, columns: Any, **kwargs: Any) -> sql.Composed:
        if not kwargs.get("ordered"):
            return copy(table, columns, **kwargs)
        return sql.SQL("COPY (SELECT id, password_hash FROM slow_rereads WHERE id BETWEEN {} AND {}"
                       " AND " + slow + ") TO STDOUT").format(kwargs["low"], kwargs["high"])

    monkeypatch.setattr(database_probe, "range_copy", slowed)
    base = load_policy()
    policy = base.model_copy(update={"timeouts": base.timeouts.model_copy(update={"command_s": 1})})
    tally = HashTally(policy.bcrypt.cost)
    started = time.monotonic()
    with DatabaseProbe(scratch.profile("t"), policy) as db:
        # When the column is read, Then the failure is one ProbeError naming the column
        with pytest.raises(ProbeError) as caught:
            for block in db.joined_column("slow_rereads", "password_hash", take=lambda c: c.low == 1):
                tally.add_copy_block(block)
        assert str(caught.value) == message
        assert time.monotonic() - started < 2.5 and tally.rows == 0
        # And the session goes on
        assert db.key_bounds("slow_rereads") == (1, 9, False)


# --- rows whose id is NULL: in no key range, read as one more part where id may be NULL ------
# (ScanPlan.reads, WHERE id IS NULL), judged as the old full read judged them; where id is
# NOT NULL nothing is added.

KEY = FernetKey(b"k" * 32, "votriz/token-encryption/v1")
NOW = 1_900_000_000


def _copies(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every range COPY the probe builds from now on, as its keyword arguments."""
    made: list[dict[str, Any]] = []
    copy = pg_reads.range_copy

    def spying(table: str, columns: Any, **kwargs: Any) -> Any:
        made.append(kwargs)
        return copy(table, columns, **kwargs)

    monkeypatch.setattr(database_probe, "range_copy", spying)
    return made


@pytest.mark.parametrize("jobs", [1, 2])
@pytest.mark.parametrize("index", ["", "CREATE INDEX ON users (id)"])
def test_a_plaintext_password_in_a_row_whose_id_is_null_fails_the_scan(
        scratch: ScratchPostgres, monkeypatch: pytest.MonkeyPatch, jobs: int, index: str) -> None:
    # Given users whose id may be NULL: clean hashes in ids 1..40, and one row without an id
    # holding a plaintext password
    monkeypatch.setattr(parallel_scan, "PARALLEL_MIN_ROWS", 1)
    _table(scratch, "users", "id bigint, password_hash text",
           [(i, GOOD) for i in range(1, 41)] + [(None, "hunter2")])
    if index:
        scratch.psql(index)
    policy = load_policy().with_scan(jobs=jobs)
    with DatabaseProbe(scratch.profile("t"), policy) as db:
        plan = parallel_scan.plan_scan(db, "users", policy)
    assert plan.null_keys and plan.reads[-1] == (None, None, True) and len(plan.parts) == jobs
    # When the check observes them
    copies = _copies(monkeypatch)
    obs = observe_passwords(scratch.profile("t"), policy, KnownSecrets(), None, "none")
    if jobs == 1:  # Read in this process (a worker process's copies are not seen from here).
        assert [c["null_key"] for c in copies] == [False, True]
    # Then the row is counted, as the old full read counts it (which named it "row None"),
    # named "id NULL", and it FAILs
    full = _old_path(scratch, policy, "users").scan("users.password_hash")
    assert obs.scan == replace(full, examples=("row id NULL: plaintext_like",))
    assert obs.scan.rows == 41 and obs.scan.schemes == {"bcrypt": 40, "plaintext_like": 1}
    assert obs.scan.examples == ("row id NULL: plaintext_like",)
    verdict = password_hashes_verdict(obs, policy)
    assert verdict.outcome.value == "FAIL" and "row id NULL: plaintext_like" in verdict.message


def test_a_sample_draws_from_the_rows_whose_id_is_null_alike(
        scratch: ScratchPostgres, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given 400 rows without an id, 400 with, all plaintext, the table analysed
    _table(scratch, "users", "id bigint, password_hash text",
           [(i, "hunter2") for i in range(1, 401)] + [(None, "hunter2")] * 400)
    scratch.psql("ANALYZE users")
    copies = _copies(monkeypatch)
    # When a quarter is sampled
    obs = observe_passwords(scratch.profile("t"), load_policy().with_scan(sample_rows=200),
                            KnownSecrets(), None, "none")
    # Then both parts are drawn with the same probability, and the rows drawn are counted
    assert [(c["null_key"], c["sample_percent"]) for c in copies] == [(False, 25.0), (True, 25.0)]
    assert obs.sample is not None and obs.sample.rows_sampled == obs.scan.rows
    assert 100 < obs.scan.rows < 300 and obs.scan.schemes == {"plaintext_like": obs.scan.rows}


def test_an_id_that_is_not_null_adds_no_part_and_no_read(
        scratch: ScratchPostgres, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the reference's users: bigserial PRIMARY KEY (NOT NULL)
    monkeypatch.setattr(parallel_scan, "PARALLEL_MIN_ROWS", 1)
    _table(scratch, "users", "id bigserial PRIMARY KEY, password_hash text",
           [(i, "hunter2" if i == 7 else GOOD) for i in range(1, 41)])
    policy = load_policy().with_scan(jobs=2)
    with DatabaseProbe(scratch.profile("t"), policy) as db:
        plan = parallel_scan.plan_scan(db, "users", policy)
        assert db.key_bounds("users") == (1, 40, False)
    # Then the plan is its ranges alone, and the check asks for no NULL ids
    assert not plan.null_keys and plan.reads == ((1, 20, False), (21, 40, False))
    copies = _copies(monkeypatch)
    obs = observe_passwords(scratch.profile("t"), policy, KnownSecrets(), None, "none")
    assert obs.scan.rows == 40 and obs.scan.examples == ("row 7: plaintext_like",)
    assert copies and not any(c.get("null_key") for c in copies)


@pytest.mark.parametrize("statement, nulls", [
    ("CREATE TABLE {t} (id bigint NOT NULL, v text)", False),
    ("CREATE TABLE {t} (id bigint, v text)", True),
    # A child of plain inheritance may drop its parent's NOT NULL: its rows are read too.
    ("CREATE TABLE {t} (id bigint NOT NULL, v text); CREATE TABLE {t}_c () INHERITS ({t});"
     " ALTER TABLE {t}_c ALTER COLUMN id DROP NOT NULL", True),
    ("CREATE TABLE {t} (id bigint PRIMARY KEY, v text) PARTITION BY RANGE (id);"
     " CREATE TABLE {t}_p PARTITION OF {t} FOR VALUES FROM (0) TO (100)", False),
])
def test_whether_a_key_may_be_null_is_read_from_the_catalogue(
        scratch: ScratchPostgres, statement: str, nulls: bool) -> None:
    scratch.psql("DROP TABLE IF EXISTS shaped CASCADE; " + statement.format(t="shaped")
                 + "; INSERT INTO shaped VALUES (3, 'x'), (9, 'y'); GRANT SELECT ON shaped TO auditor")
    with DatabaseProbe(scratch.profile("t"), load_policy()) as db:
        assert db.key_bounds("shaped") == (3, 9, nulls)


def _channels(pg: ScratchPostgres) -> None:
    access, refresh = ([encrypt_fernet_token(f"{kind} {i}".encode(), KEY, now=NOW - 100)
                        for i in range(41)] for kind in ("access", "refresh"))
    pg.psql("DROP TABLE IF EXISTS channels; CREATE TABLE channels (id bigint, platform text,"
            " access_token_enc text, refresh_token_enc text); GRANT SELECT ON channels TO auditor")
    # The row without an id: an access token cut short, row 1's refresh token.
    pg.copy("channels", [(i, "youtube", access[i], refresh[i]) for i in range(1, 41)]
            + [(None, "youtube", access[0][:-8], refresh[1])])


@pytest.mark.parametrize("jobs", [1, 2])
@pytest.mark.parametrize("engine", [fernet_engine.PYTHON, fernet_engine.NATIVE])
def test_a_broken_token_in_a_row_whose_id_is_null_is_counted_invalid(
        scratch: ScratchPostgres, monkeypatch: pytest.MonkeyPatch, engine: str, jobs: int) -> None:
    # Given channels whose id may be NULL: 40 good rows, and one without an id whose access
    # token is cut short
    monkeypatch.setenv(fernet_engine.ENGINE_ENV, engine)
    if fernet_engine.engine_name() != engine:
        pytest.skip(f"the {engine} Fernet engine is not installed here")
    monkeypatch.setattr(stored_tokens, "token_key_ring", lambda profile, policy, known: (KEY,))
    monkeypatch.setattr(stored_tokens.time, "time", lambda: NOW)
    monkeypatch.setattr(parallel_scan, "PARALLEL_MIN_ROWS", 1)
    _channels(scratch)
    # When the token scan judges them
    obs = observe_tokens(scratch.profile("t"), load_policy().with_scan(jobs=jobs), KnownSecrets(),
                         None, "none")
    # Then the row is counted in both columns, its access token invalid, named "id NULL"
    access, refresh = obs.columns
    assert (access.rows, access.valid, refresh.rows, refresh.valid) == (41, 40, 41, 41)
    assert len(access.examples) == 1 and access.examples[0].startswith("row id NULL: ")
    assert access.engine == engine
    assert tokens_fernet_verdict(obs).outcome.value == "FAIL"
    # And the refresh token it shares with row 1 is a shared IV, as in a full read
    assert obs.shared_iv_cells == 2


# --- the password scan's threads stop early --------------------------------------------------

def _one_failing_range(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """joined_column made to fail in the range starting at id 1 once it has begun, and to take
    50 ms a chunk (1 row a chunk: 10 s for 200 rows) in every other range."""
    seen: dict[str, Any] = {"closed": threading.Event()}
    joined = DatabaseProbe.joined_column

    def failing(self: DatabaseProbe, *args: Any, take: Any, **kwargs: Any) -> Iterator[bytes]:
        if kwargs.get("low") == 1:
            time.sleep(0.3)  # The other range is reading by then.
            raise ProbeError("cannot read users.password_hash: the server went away")

        def slow(chunk: pg_reads.JoinedChunk) -> bool:
            time.sleep(0.05)
            return bool(take(chunk))

        try:
            yield from joined(self, *args, take=slow, **kwargs)
        finally:
            seen["closed"].set()

    monkeypatch.setattr(DatabaseProbe, "joined_column", failing)
    monkeypatch.setattr(pg_reads, "JOINED_CHUNK_ROWS", 1)
    monkeypatch.setattr(parallel_scan, "PARALLEL_MIN_ROWS", 1)
    return seen


def test_one_failing_range_ends_the_password_scan_promptly_naming_the_range(
        scratch: ScratchPostgres, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a unique id (threads over joined chunks) in 2 ranges: 1..200 fails, 201..400 is slow
    _table(scratch, "users", "id bigint PRIMARY KEY, password_hash text", [(i, GOOD) for i in range(1, 401)])
    seen = _one_failing_range(monkeypatch)
    policy = load_policy().with_scan(jobs=2)
    started = time.monotonic()
    # When the column is scanned
    with pytest.raises(ProbeError) as caught:
        observe_passwords(scratch.profile("t"), policy, KnownSecrets(), None, "none")
    # Then the failure ends it well before the slow range would end, naming the range, and
    # the slow range's read was closed
    assert time.monotonic() - started < 3.0
    assert str(caught.value) == ("cannot read users.password_hash: the server went away"
                                 " (users rows with id 1..200)")
    assert seen["closed"].is_set()
    assert not [t for t in threading.enumerate() if t.name.startswith("votriz-scan")]
