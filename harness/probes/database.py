"""A read-only look into the service's PostgreSQL, as the auditor role.

The probe connects with the profile's DSN and the auditor password (read from
the file the profile names, registered as a known secret), in a read-only
session with the policy's connect and statement timeouts. It refuses a role
that could write the service's tables, unless the profile explicitly allows
it, so that an audit can never change what it audits.

What it observes: the server version, every table and column visible to the
role (and the tables it cannot read: blind spots), a column's values streamed
through a server-side cursor in batches (memory stays flat over millions of
rows), and a table's rows as ``COPY`` text in blocks (for the column scans and
the plaintext sweep), also in a snapshot one session exports and others import,
so that sessions reading parts of one table side by side see one state of it.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

import psycopg
from psycopg import sql

from harness.deadline import Deadline, Watch, shutdown_socket, watchdog
from harness.outcomes import ProbeError
from harness.policy import Policy
from harness.probes import pg_reads
from harness.probes.pg_connect import connect_limit, libpq_connect_timeout
from harness.probes.pg_reads import JoinedChunk, copy_blocks, joined_chunk, range_copy
from harness.profile import ProfileError, TargetProfile
from harness.redaction import KnownSecrets

_SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")
_WRITE_PRIVILEGES = ("INSERT", "UPDATE", "DELETE", "TRUNCATE")
DEFAULT_BATCH_ROWS = 10_000
#: Bytes of COPY output gathered before they are handed on (see DatabaseProbe.copy_rows).
COPY_BLOCK_BYTES = 1 << 20
#: Seconds the client-side deadline of a query waits beyond its server-side statement_timeout,
#: so that a server that keeps its promise reports the cancellation itself.
CLIENT_GRACE_S = 0.5
#: How long a read in an exported snapshot waits for a table's lock: a rewrite queued behind the
#: exporter's hold would otherwise hold the read, and every query of the service's after it, for
#: the whole of ``timeouts.command_s``.
READER_LOCK_WAIT_MS = 1000


@dataclass(frozen=True)
class DatabaseServer:
    """Who we are connected to, and as whom.

    Attributes:
        version_num: ``server_version_num`` (e.g. 150020 for 15.20).
        version: ``server_version`` as the server reports it.
        role: the role the session runs as.
        database: the database name.
        superuser: whether that role is a superuser.
    """

    version_num: int
    version: str
    role: str
    database: str
    superuser: bool

    @property
    def major(self) -> int:
        """The major version (15 for 150020)."""
        return self.version_num // 10000


@dataclass(frozen=True)
class ColumnInfo:
    """One column the auditor role can read.

    Attributes:
        schema: its schema.
        table: its table.
        column: its name.
        data_type: ``information_schema.columns.data_type`` (``text``, ``bigint`` ...).
        is_foreign_key: whether it is (part of) a foreign key.
        is_primary_key: whether it is (part of) the primary key.
    """

    schema: str
    table: str
    column: str
    data_type: str
    is_foreign_key: bool = False
    is_primary_key: bool = False

    @property
    def name(self) -> str:
        """``table.column``, or ``schema.table.column`` outside ``public``."""
        prefix = "" if self.schema == "public" else f"{self.schema}."
        return f"{prefix}{self.table}.{self.column}"


@dataclass(frozen=True)
class TableVisibility:
    """Which of the database's tables the auditor role can and cannot read.

    Attributes:
        columns: every readable column, ordered by table then position.
        unreadable_tables: ``schema.table`` names the role cannot SELECT (blind spots).
        row_counts: exact row count of each readable table (``schema.table`` → rows).
    """

    columns: tuple[ColumnInfo, ...]
    unreadable_tables: tuple[str, ...]
    row_counts: dict[str, int]


Connect = Callable[..., psycopg.Connection[Any]]


class DatabaseProbe:
    """A read-only session as the auditor role. Use as a context manager.

    Attributes:
        server: what the server reported at connection time.
    """

    def __init__(self, profile: TargetProfile, policy: Policy, *,
                 known_secrets: KnownSecrets | None = None,
                 connect: Connect = psycopg.connect) -> None:
        if profile.database is None:
            raise ProbeError("the profile has no [database] section")
        self._config = profile.database
        self._policy = policy
        self._secrets = known_secrets
        self._connect = connect
        self._conn: psycopg.Connection[Any] | None = None
        self.server: DatabaseServer | None = None

    def __enter__(self) -> DatabaseProbe:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _safe(self, text: str) -> str:
        return self._secrets.redact(text) if self._secrets is not None else text

    def open(self) -> DatabaseServer:
        """Connect, check the role cannot write, and read the server's identity.

        Raises:
            ProbeError: cannot connect, or the role can write the service's tables
                and ``database.allow_write_role`` is not set.
        """
        password: str | None = None
        if self._config.password is not None:
            try:
                password = self._config.password.read("database.password")
            except ProfileError as exc:
                raise ProbeError(str(exc)) from None
            if self._secrets is not None and len(password) >= KnownSecrets.min_length:
                self._secrets.add(password, "auditor database password")
        timeouts = self._policy.timeouts
        statement_ms = int(timeouts.request_s * 1000)
        try:
            self._conn = self._connect(
                self._config.dsn,
                password=password,
                connect_timeout=libpq_connect_timeout(timeouts.connect_s),
                application_name="votriz-audit",
                options=f"-c statement_timeout={statement_ms} "
                        "-c default_transaction_read_only=on",
            )
        except psycopg.errors.ConnectionTimeout as exc:
            # psycopg bounds the whole connection (startup and authentication included) by
            # connect_timeout, so a server that trickles its startup answer ends here too.
            raise ProbeError(self._safe(f"cannot connect to the database ({self._config.dsn}): "
                                        f"{_first_line(exc)} ({connect_limit(timeouts.connect_s)})"
                                        )) from None
        except psycopg.Error as exc:
            raise ProbeError(self._safe(f"cannot connect to the database ({self._config.dsn}): "
                                        f"{_first_line(exc)}")) from None
        try:
            row = self._one("SELECT current_setting('server_version_num')::int,"
                            " current_setting('server_version'), current_user,"
                            " current_database(),"
                            " (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)")
            self.server = DatabaseServer(int(row[0]), str(row[1]), str(row[2]), str(row[3]),
                                         bool(row[4]))
            if not self._config.allow_write_role:
                self._refuse_writer(self.server)
        except BaseException:
            self.close()
            raise
        return self.server

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.rollback()
            finally:
                self._conn.close()
                self._conn = None

    @property
    def connection(self) -> psycopg.Connection[Any]:
        if self._conn is None:
            raise ProbeError("the database probe is not connected")
        return self._conn

    def _one(self, query: str | sql.Composed, params: tuple[Any, ...] = ()) -> tuple[Any, ...]:
        rows = self._all(query, params)
        if not rows:
            raise ProbeError("the database returned no row for a query that always has one")
        return rows[0]

    def _deadline_of(self, seconds: float, key: str) -> tuple[Deadline, Any]:
        """A client-side deadline for one exchange, and what ends it: the connection's socket
        shut down (psycopg waits without a client-side limit, and statement_timeout is kept
        by the server only if the server is honest)."""
        conn = self.connection
        fileno = conn.pgconn.socket

        def cut() -> None:
            # Only this session's socket: once it is closed, its number may be another's.
            if not conn.closed:
                shutdown_socket(fileno)

        return Deadline(seconds + CLIENT_GRACE_S, key), cut

    def _cut(self, deadline: Deadline) -> ProbeError:
        """The error for an exchange the client-side deadline ended; the session is closed."""
        conn, self._conn = self.connection, None
        info = conn.info
        where = f"the socket in {info.host}" if info.host.startswith("/") else f"{info.host}:{info.port}"
        with contextlib.suppress(psycopg.Error):
            conn.close()
        return ProbeError(f"the database at {where} did not finish answering within the policy's "
                          f"{deadline.seconds - CLIENT_GRACE_S:g} s ({deadline.key}); the session was closed")

    def _all(self, query: str | sql.Composed,
             params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        deadline, cut = self._deadline_of(self._policy.timeouts.request_s, "timeouts.request_s")
        watch = Watch()
        try:
            with watchdog(deadline, cut) as watch, self.connection.cursor() as cursor:
                cursor.execute(query, params)
                return list(cursor.fetchall())
        except psycopg.errors.QueryCanceled:
            self.connection.rollback()
            raise ProbeError("a database query exceeded the statement timeout "
                             f"({self._policy.timeouts.request_s:g} s)") from None
        except psycopg.Error as exc:
            if watch.fired:
                raise self._cut(deadline) from None
            self.connection.rollback()
            raise ProbeError(self._safe(f"database query failed: {_first_line(exc)}")) from None

    def write_privileges(self) -> dict[str, list[str]]:
        """``schema.table`` → the write privileges the session's role holds on it."""
        found: dict[str, list[str]] = {}
        rows = self._all(
            "SELECT n.nspname, c.relname, p.priv"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " CROSS JOIN unnest(%s::text[]) AS p(priv)"
            " WHERE c.relkind IN ('r', 'p') AND n.nspname <> ALL(%s::text[])"
            "   AND n.nspname NOT LIKE 'pg_temp%%'"
            "   AND has_table_privilege(c.oid, p.priv)"
            " ORDER BY 1, 2, 3",
            (list(_WRITE_PRIVILEGES), list(_SYSTEM_SCHEMAS)))
        for schema, table, privilege in rows:
            found.setdefault(f"{schema}.{table}", []).append(str(privilege))
        return found

    def _refuse_writer(self, server: DatabaseServer) -> None:
        if server.superuser:
            raise ProbeError(f"the auditor role {server.role!r} is a superuser; audit with a "
                             "SELECT-only role, or set database.allow_write_role = true")
        writable = self.write_privileges()
        if writable:
            first = ", ".join(f"{table} ({'/'.join(privs)})"
                              for table, privs in list(writable.items())[:3])
            more = f" and {len(writable) - 3} more" if len(writable) > 3 else ""
            raise ProbeError(f"the auditor role {server.role!r} can write {len(writable)} of the "
                             f"service's tables: {first}{more}; audit with a SELECT-only role, "
                             "or set database.allow_write_role = true in the profile")

    def visible_tables(self) -> TableVisibility:
        """Every column the role can read, the tables it cannot, and exact row counts."""
        # pg_constraint, not information_schema: the latter hides the constraints
        # of tables the role may only SELECT from.
        keys = self._all(
            "SELECT n.nspname, c.relname, a.attname, con.contype::text"
            " FROM pg_constraint con"
            " JOIN pg_class c ON c.oid = con.conrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY(con.conkey)"
            " WHERE con.contype IN ('p', 'f')")
        foreign = {(s, t, c) for s, t, c, kind in keys if kind == "f"}
        primary = {(s, t, c) for s, t, c, kind in keys if kind == "p"}
        rows = self._all(
            "SELECT c.table_schema, c.table_name, c.column_name, c.data_type"
            " FROM information_schema.columns c"
            " JOIN information_schema.tables t"
            "   ON t.table_schema = c.table_schema AND t.table_name = c.table_name"
            " WHERE c.table_schema <> ALL(%s::text[]) AND t.table_type = 'BASE TABLE'"
            "   AND has_column_privilege(quote_ident(c.table_schema) || '.' ||"
            "       quote_ident(c.table_name), c.column_name, 'SELECT')"
            " ORDER BY c.table_schema, c.table_name, c.ordinal_position",
            (list(_SYSTEM_SCHEMAS),))
        columns = tuple(ColumnInfo(s, t, c, d, (s, t, c) in foreign, (s, t, c) in primary)
                        for s, t, c, d in rows)
        unreadable = self._all(
            "SELECT n.nspname || '.' || c.relname FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind IN ('r', 'p') AND n.nspname <> ALL(%s::text[])"
            "   AND n.nspname NOT LIKE 'pg_temp%%'"
            "   AND NOT has_table_privilege(c.oid, 'SELECT') ORDER BY 1",
            (list(_SYSTEM_SCHEMAS),))
        counts: dict[str, int] = {}
        for schema, table in dict.fromkeys((col.schema, col.table) for col in columns):
            query = sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(schema),
                                                                 sql.Identifier(table))
            counts[f"{schema}.{table}"] = int(self._one(query)[0])
        return TableVisibility(columns, tuple(str(r[0]) for r in unreadable), counts)

    def has_column(self, table: str, column: str, *, schema: str = "public") -> bool:
        """Whether the role can read ``schema.table.column``."""
        return bool(self._one(
            "SELECT count(*) FROM information_schema.columns WHERE table_schema = %s"
            " AND table_name = %s AND column_name = %s", (schema, table, column))[0])

    def stream_column(self, table: str, column: str, *, schema: str = "public",
                      key: str | None = "id", where: str | None = None,
                      params: tuple[Any, ...] = (),
                      batch_rows: int = DEFAULT_BATCH_ROWS) -> Iterator[list[tuple[Any, Any]]]:
        """Yield batches of ``(key, value)`` rows through a server-side cursor.

        As :meth:`stream_rows` with one column; ``key`` None numbers the rows instead.
        """
        row_number = 0
        for batch in self.stream_rows(table, (column,), schema=schema, key=key, where=where,
                                      params=params, batch_rows=batch_rows):
            if key is None:
                batch = [(row_number + i, row[1]) for i, row in enumerate(batch)]
            row_number += len(batch)
            yield batch

    def stream_rows(self, table: str, columns: Sequence[str | None], *, schema: str = "public",
                    key: str | None = "id", where: str | None = None,
                    params: tuple[Any, ...] = (), batch_rows: int = DEFAULT_BATCH_ROWS,
                    text_as_bytes: bool = False) -> Iterator[list[tuple[Any, ...]]]:
        """Yield batches of ``(key, *columns)`` rows of one query, as the server streams them.

        The server sends rows without waiting to be asked (libpq's chunked
        rows mode), so it reads the table while the caller judges the rows
        already here, and memory is bounded by ``batch_rows``, not by the
        table's size; the table is read once however many columns are asked
        for. The whole read may take ``timeouts.command_s`` (as a column's
        dump does). ``key`` is a column that identifies a row in messages
        (None: NULL). A column given as None is NULL text in its place (a
        column this table lacks). ``where`` is a trusted SQL condition written
        by the harness (with ``%s`` placeholders for ``params``), never user
        input. With ``text_as_bytes`` text values arrive as the bytes the
        server stores, undecoded (the read's own transaction uses
        ``client_encoding`` SQL_ASCII): for values judged as bytes, such as
        tokens, at a fraction of the cost of decoding each one.

        Raises:
            ProbeError: the read failed or exceeded its time; the message names
                the columns, never a value.
        """
        selected = [sql.Identifier(key) if key else sql.SQL("NULL")]
        selected += [sql.Identifier(c) if c else sql.SQL("NULL::text") for c in columns]
        query = sql.SQL("SELECT {} FROM {}.{}").format(
            sql.SQL(", ").join(selected), sql.Identifier(schema), sql.Identifier(table))
        if where:
            query = query + sql.SQL(" WHERE ") + sql.SQL(where)
        names = ", ".join(f"{table}.{column}" for column in columns if column)
        with self._long_read((f"reading {names}", f"read {names}"),
                             stored_bytes=text_as_bytes) as cursor:
            # A generator (typed as an iterator): closing it ends the query.
            rows = cast(Generator[Any, None, None], cursor.stream(query, params, size=batch_rows))
            try:
                while batch := list(itertools.islice(rows, batch_rows)):
                    yield batch
            finally:
                # A reader that stops early: psycopg cancels the rest of the query
                # and drains what was already sent, so the session can go on.
                rows.close()

    def key_bounds(self, table: str, key: str = "id", *,
                   schema: str = "public") -> tuple[int, int, bool] | None:
        """``(lowest, highest, whether a row may hold a NULL key)`` of an integer key, in one query
        (:func:`~harness.probes.pg_reads.key_span_query`); None for an empty table or another key."""
        low, high, nulls = self._one(pg_reads.key_span_query(table, key, schema=schema))
        if not isinstance(low, int) or not isinstance(high, int):
            return None
        return low, high, bool(nulls)

    def planned_rows(self, table: str, *, schema: str = "public") -> int | None:
        """The planner's estimate of a table's rows (``pg_class.reltuples``), or None when the
        table was never analysed."""
        row = self._one("SELECT coalesce((SELECT c.reltuples::bigint FROM pg_class c"
                        " JOIN pg_namespace n ON n.oid = c.relnamespace"
                        " WHERE n.nspname = %s AND c.relname = %s), -1)", (schema, table))
        return int(row[0]) if int(row[0]) >= 0 else None

    def count_rows(self, table: str, *, schema: str = "public") -> int:
        """A table's exact number of rows (a scan)."""
        query = sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(table))
        return int(self._one(query)[0])

    def copy_rows(self, table: str, columns: Sequence[str | None], *, schema: str = "public",
                  key: str | None = "id", low: int | None = None, high: int | None = None,
                  sample_percent: float | None = None, stored_bytes: bool = False,
                  null_key: bool = False, snapshot: str | None = None,
                  pages: tuple[int, int] | None = None) -> Iterator[bytes]:
        """``key, *columns`` of the rows with ``low <= key <= high`` (``null_key``: whose key is
        NULL, named ``id NULL``; ``pages``: of the heap pages ``first <= page < end``, a TID
        range scan) as ``COPY`` text lines, in blocks of whole lines of about
        :data:`COPY_BLOCK_BYTES` (read them with :func:`harness.formats.copy_text.copy_text_rows`).

        The cheapest way to read a column's values: the server formats the rows once, and
        a reader pays a Python step per block, not per row or value. A column given as None
        is NULL in its place. ``sample_percent`` draws each row with that probability
        (``TABLESAMPLE BERNOULLI``: a uniform sample). With ``stored_bytes`` text arrives as
        the bytes the server stores (``client_encoding`` SQL_ASCII for this read), else in
        the session's encoding (UTF-8). ``snapshot`` (from :meth:`exported_snapshot`) reads
        the database as another session sees it. The read may take ``timeouts.command_s``.

        Raises:
            ProbeError: the read failed or exceeded its time; the message names the
                columns, never a value.
        """
        query = range_copy(table, columns, schema=schema, key=key, low=low, high=high,
                           sample_percent=sample_percent, null_key=null_key, pages=pages)
        names = ", ".join(f"{table}.{column}" for column in columns if column)
        return self._copy_out(query, (f"reading {names}", f"read {names}"),
                              stored_bytes=stored_bytes, snapshot=snapshot)

    def _copy_out(self, query: sql.Composed, what: tuple[str, str], *, stored_bytes: bool = False,
                  snapshot: str | None = None) -> Iterator[bytes]:
        """A ``COPY ... TO STDOUT``'s output in blocks of whole lines, within the deadline;
        ``what`` names the read in messages (``("reading x", "read x")``)."""
        with self._long_read(what, stored_bytes=stored_bytes,
                             snapshot=snapshot or False) as cursor:
            # libpq hands COPY out a row at a time: gathered into blocks of about
            # COPY_BLOCK_BYTES, a reader pays its per-chunk cost per block.
            yield from copy_blocks(cursor, query, COPY_BLOCK_BYTES)

    def page_span(self, table: str, *, schema: str = "public") -> int | None:
        """In :meth:`exported_snapshot`'s transaction: the pages of ``table`` its rows lie in,
        or None where they cannot be read by pages (a server before PostgreSQL 14, a view,
        ``ctid`` not granted: :func:`~harness.probes.pg_reads.page_span_query`)."""
        if self.server is None or self.server.major < pg_reads.TID_RANGE_MAJOR:
            return None
        pages, readable = self._one(pg_reads.page_span_query(table, schema=schema))
        return int(pages) if readable else None

    def reads_ctid(self, table: str, *, schema: str = "public") -> bool:
        """Whether this role may read ``table``'s ``ctid`` (:func:`pg_reads.ctid_readable_query`)."""
        return bool(self._one(pg_reads.ctid_readable_query(table, schema=schema))[0])

    def joined_pages(self, table: str, column: str, *, snapshot: str,
                     chunks: Callable[[], tuple[int, int] | None],
                     take: Callable[[JoinedChunk], bool], part_rows: int,
                     schema: str = "public", key: str = "id") -> Iterator[bytes]:
        """The chunks of pages ``chunks()`` hands out (None: none left; other sessions may take
        from it too), read in the exported ``snapshot``: each
        (:func:`~harness.probes.pg_reads.joined_chunk`) handed to ``take``, and the rows of one
        it refuses (False) read again, the same rows, and yielded as ``key, column`` ``COPY``
        text blocks. A transaction reads chunks until it has read ``part_rows`` rows, within
        ``timeouts.command_s``; a failure is a ProbeError naming the column, never a value."""
        name, query = f"{table}.{column}", pg_reads.chunk_query(table, column, schema=schema)
        ahead = chunks()
        while ahead is not None:
            with self._long_read((f"reading {name}", f"read {name}"), snapshot=snapshot,
                                 stored_bytes=True) as cursor:
                read = 0
                while ahead is not None and read < part_rows:
                    chunk = joined_chunk(cursor, query, *ahead)
                    read += chunk.rows
                    if not take(chunk):
                        # Read again in the session's own encoding, as every COPY is.
                        cursor.execute("SET LOCAL client_encoding TO DEFAULT")
                        yield from copy_blocks(cursor, range_copy(
                            table, (column,), schema=schema, key=key, low=None, high=None,
                            pages=ahead), COPY_BLOCK_BYTES)
                        cursor.execute("SET LOCAL client_encoding TO 'SQL_ASCII'")
                    ahead = chunks()

    @contextlib.contextmanager
    def exported_snapshot(self, table: str | None = None, *,
                          schema: str = "public") -> Iterator[str | None]:
        """This session's snapshot, for other sessions to read the database in the state it
        sees (``pg_export_snapshot()``, as ``pg_dump --jobs`` does; a read imports it with
        ``snapshot=``); its ``REPEATABLE READ`` transaction, and with it the snapshot, lasts
        until the ``with`` ends. None when the server does not export one (a connection
        pooler in transaction mode, an old server): the caller then reads in one session.

        ``table``, the one the other sessions read by pages, is held as ``pg_dump`` holds it
        until the ``with`` ends (the share lock a read takes, by a read of none of its rows):
        no ``VACUUM FULL``, ``CLUSTER`` or ``ALTER TABLE`` moves its rows between pages already
        read and pages still to come, or empties it for the snapshot."""
        conn = self.connection
        conn.rollback()
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        try:
            try:
                exported: str | None = str(self._one("SELECT pg_export_snapshot()")[0])
            except ProbeError:
                if self._conn is None:
                    raise  # The session was cut at its deadline: nothing more can be read.
                exported = None
            if exported is not None and table is not None:
                self._one(sql.SQL("SELECT count(*) FROM (SELECT FROM {}.{} LIMIT 0) AS held").format(
                    sql.Identifier(schema), sql.Identifier(table)))
            yield exported
        finally:
            if not conn.closed:
                with contextlib.suppress(psycopg.Error):
                    conn.rollback()
                conn.isolation_level = None

    @contextlib.contextmanager
    def _long_read(self, what: tuple[str, str], *, stored_bytes: bool = False,
                   snapshot: bool | str = False) -> Iterator[psycopg.Cursor[Any]]:
        """A cursor for one read in its own transaction within ``timeouts.command_s``; ``what``
        names it in the ProbeError its errors become. ``snapshot``: in one snapshot
        (``REPEATABLE READ``), the one exported under that name if it is one."""
        doing, verb = what
        limit_ms = int(self._policy.timeouts.command_s * 1000)
        conn = self.connection
        deadline, cut = self._deadline_of(limit_ms / 1000, "timeouts.command_s")
        watch = Watch()
        try:
            with watchdog(deadline, cut) as watch, conn.cursor() as cursor:
                if snapshot:
                    conn.rollback()  # A transaction's first statement sets its isolation.
                    cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                    if isinstance(snapshot, str):
                        cursor.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(
                            sql.Literal(snapshot)))
                        # The exporter holds the table: a rewrite queued behind it would queue
                        # this read, and with it the service's queries, until command_s.
                        cursor.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(
                            sql.Literal(min(limit_ms, READER_LOCK_WAIT_MS))))
                cursor.execute(sql.SQL("SET LOCAL statement_timeout = {}").format(
                    sql.Literal(limit_ms)))
                if stored_bytes:
                    cursor.execute("SET LOCAL client_encoding TO 'SQL_ASCII'")
                yield cursor
            conn.rollback()
        except psycopg.errors.QueryCanceled:
            conn.rollback()
            raise ProbeError(f"{doing} exceeded {limit_ms / 1000:g} s") from None
        except psycopg.errors.LockNotAvailable:
            conn.rollback()
            raise ProbeError(f"{doing} stopped: another session waits to rewrite or alter the "
                             "table (a migration, VACUUM FULL?), and the audit gives way") from None
        except psycopg.Error as exc:
            if watch.fired:
                raise self._cut(deadline) from None
            conn.rollback()
            raise ProbeError(self._safe(f"cannot {verb}: {_first_line(exc)}")) from None
        finally:
            # Also when the reader stops early: no transaction, time limit or encoding
            # outlives the read.
            if not conn.closed:
                with contextlib.suppress(psycopg.Error):
                    conn.rollback()


def open_database(profile: TargetProfile, policy: Policy, known: KnownSecrets) -> DatabaseProbe:
    """A probe for one check, to use as a context manager."""
    # One connection per check: other checks restart PostgreSQL or rotate passwords.
    return DatabaseProbe(profile, policy, known_secrets=known)


def database_server(profile: TargetProfile, policy: Policy, known: KnownSecrets) -> DatabaseServer:
    """What the server reports to the auditor role (one connection, closed again)."""
    with open_database(profile, policy, known) as db:
        assert db.server is not None
        return db.server


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
