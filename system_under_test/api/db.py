"""PostgreSQL access: a small connection pool and the schema."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql

SCHEMA_PATH = Path(__file__).with_name("schema.sql")

# Columns that exist only when a fault asks the service to keep plaintext: (table, column).
FAULT_COLUMNS = {
    "email-plaintext": ("users", "contact_email"),
    "backup-codes-shown-again": ("mfa_backup_codes", "code_plain"),
}


class PoolTimeout(RuntimeError):
    """No connection became free in time."""


class ConnectionPool:
    """At most ``size`` autocommit connections, opened lazily and reused.

    A connection that broke while in use is discarded, so a restarted
    PostgreSQL only costs the requests that were running at that moment.

    Attributes:
        size: the most connections open at once.
        timeout: seconds a caller waits for a free connection.
    """

    def __init__(self, conninfo: str, password: str, size: int = 4, timeout: float = 10.0) -> None:
        self._conninfo = conninfo
        self._password = password
        self.size = size
        self.timeout = timeout
        self._slots = threading.BoundedSemaphore(size)
        self._idle: list[psycopg.Connection] = []
        self._lock = threading.Lock()

    def _connect(self) -> psycopg.Connection:
        return psycopg.connect(self._conninfo, password=self._password, autocommit=True,
                               connect_timeout=5, application_name="votriz-api")

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """Lend a connection; use ``conn.transaction()`` for multi-statement work."""
        if not self._slots.acquire(timeout=self.timeout):
            raise PoolTimeout("no database connection free")
        conn: psycopg.Connection | None = None
        try:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None or conn.closed:
                conn = self._connect()
            yield conn
        finally:
            if conn is not None:
                if conn.closed or conn.broken or conn.info.transaction_status != 0:
                    # Status 0 is IDLE; anything else means a caller left a mess.
                    conn.close()
                else:
                    with self._lock:
                        self._idle.append(conn)
            self._slots.release()

    def close(self) -> None:
        """Close the idle connections."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def apply_schema(conn: psycopg.Connection, faults: frozenset[str]) -> None:
    """Apply ``schema.sql`` and the plaintext columns of the faults that are on."""
    conn.execute(SCHEMA_PATH.read_text(encoding="utf-8"))
    apply_fault_columns(conn, faults)


def apply_fault_columns(conn: psycopg.Connection, faults: frozenset[str]) -> None:
    """Add the plaintext columns that the faults switched on need (idempotent).

    A column already there is left alone without touching its table: ALTER TABLE takes the
    table's ACCESS EXCLUSIVE lock even when IF NOT EXISTS finds the column, and every API
    worker calls this as it starts. Behind a backup's snapshot (ACCESS SHARE held while
    pg_dump, queued behind the ALTER, is waited for) that was a deadlock no server sees:
    ``ops backup``, pg_dump and a starting worker waited on each other for minutes.
    """
    for fault, (table, column) in FAULT_COLUMNS.items():
        if fault not in faults:
            continue
        present = conn.execute(
            "SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attname = %s "
            "AND NOT attisdropped", (table, column)).fetchone()
        if present is None:
            conn.execute(sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} text NULL").format(
                sql.Identifier(table), sql.Identifier(column)))
