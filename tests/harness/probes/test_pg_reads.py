"""The joined read of a hash column (pg_reads.joined_chunks through DatabaseProbe.joined_column
and passwords.classify_hash_part) against a scratch PostgreSQL 15: the errors of a chunk read
again are handled as the probe's own.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from psycopg import sql
from scratch_postgres import INSTALLED, ScratchPostgres, scratch_postgres

from harness.column_scans import HashTally
from harness.outcomes import ProbeError
from harness.policy import load_policy
from harness.probes import database as database_probe
from harness.probes import pg_reads
from harness.probes.database import DatabaseProbe

GOOD = "$2b$12$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW"

pytestmark = pytest.mark.skipif(not INSTALLED, reason="PostgreSQL 15 not installed")


@pytest.fixture(scope="module")
def scratch() -> Iterator[ScratchPostgres]:
    with scratch_postgres("pgreads-pg-") as pg:
        pg.psql("CREATE ROLE auditor LOGIN")
        yield pg


def _table(pg: ScratchPostgres, name: str, columns: str, rows: list[tuple[int, str | None]]) -> None:
    pg.psql(f"DROP TABLE IF EXISTS {name} CASCADE; CREATE TABLE {name} ({columns});"
            f" GRANT SELECT ON {name} TO auditor")
    pg.copy(name, rows)


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
        assert db.key_span("slow_rereads") == (1, 9)
