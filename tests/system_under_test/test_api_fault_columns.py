"""The fault columns on a real PostgreSQL: added once, and a column already there takes no lock
on its table (every API worker asks as it starts, maybe while a backup holds its snapshot)."""

from __future__ import annotations

import threading

import psycopg
import pytest
from scratch_postgres import scratch_postgres

from system_under_test.api.db import apply_fault_columns

pytestmark = [pytest.mark.integration]


def test_a_present_column_is_not_altered_again_while_a_backup_holds_the_table() -> None:
    with scratch_postgres("faultcols-pg-") as pg:
        pg.psql("CREATE TABLE users (id bigint PRIMARY KEY); CREATE TABLE mfa_backup_codes (id bigint)")
        with psycopg.connect(pg.dsn(), autocommit=True) as conn:
            # Given the column added once (migrate), and asked again: nothing changes
            apply_fault_columns(conn, frozenset({"email-plaintext"}))
            apply_fault_columns(conn, frozenset({"email-plaintext"}))
            assert pg.psql("SELECT attname FROM pg_attribute WHERE attrelid = 'users'::regclass "
                           "AND attnum > 0 ORDER BY attnum").split() == ["id", "contact_email"]
            # And a backup's transaction that holds ACCESS SHARE on users
            with psycopg.connect(pg.dsn()) as backup:
                backup.execute("SELECT count(*) FROM users")
                # When a starting worker asks for the column again, with a lock timeout
                done = threading.Event()

                def worker() -> None:
                    with psycopg.connect(pg.dsn(), autocommit=True,
                                         options="-c lock_timeout=2000") as other:
                        apply_fault_columns(other, frozenset({"email-plaintext"}))
                    done.set()

                thread = threading.Thread(target=worker)
                thread.start()
                thread.join(timeout=10)
                # Then it returned at once: it asked for no lock behind the backup's
                assert done.is_set()
                locks = pg.psql("SELECT count(*) FROM pg_locks WHERE NOT granted").strip()
                assert locks == "0"
            # A fault column that is missing is still added (the other fault's)
            apply_fault_columns(conn, frozenset({"backup-codes-shown-again"}))
            assert "code_plain" in pg.psql("SELECT attname FROM pg_attribute WHERE "
                                           "attrelid = 'mfa_backup_codes'::regclass")
