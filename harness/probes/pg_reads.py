"""Reads of a PostgreSQL session at the cost of the data, not of the rows: ``COPY`` output in
blocks without a Python step per row, and a column's values joined on the server a chunk of
heap pages at a time (a TID range scan: no index, no sort), in a snapshot that several
sessions share (:class:`PageSpan`), so that chunks read side by side see one table.

Both work on a psycopg cursor whose session the caller owns (transaction, time limits,
deadlines: :class:`harness.probes.database.DatabaseProbe`).
"""

from __future__ import annotations

import select
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import errors, pq, sql


def copy_blocks(cursor: psycopg.Cursor[Any], query: sql.Composed | str,
                block_bytes: int) -> Iterator[bytes]:
    """A ``COPY ... TO STDOUT``'s output, in blocks of whole rows of at least ``block_bytes``
    (the last one smaller). A reader that stops early ends the ``COPY`` (psycopg cancels it
    and drains the rest), so the session can go on either way.

    libpq hands ``COPY`` data out one row a call; psycopg's ``Copy`` iteration pays about
    1 µs of Python a row around that call, this loop about 0.35 µs (measured over 1M rows of
    68 bytes: 0.37 s of CPU against 1.0 s). It waits for the socket with ``poll``, so a
    watchdog that shuts the socket down ends the wait, and the read then fails with
    ``psycopg.OperationalError`` as psycopg's own would.

    Raises:
        psycopg.Error: the server ended the ``COPY`` with an error (its SQLSTATE's class,
            e.g. ``QueryCanceled`` for a statement timeout), or the connection failed.
    """
    with cursor.copy(query):
        pgconn = cursor.connection.pgconn
        get, pending = pgconn.get_copy_data, bytearray()
        waiting = select.poll()
        waiting.register(pgconn.socket, select.POLLIN)
        while True:
            size, data = get(1)
            if size > 0:
                pending += data
                if len(pending) >= block_bytes:
                    yield bytes(pending)
                    pending = bytearray()
            elif size == 0:
                waiting.poll()
                pgconn.consume_input()
            else:
                break
        if pending:
            yield bytes(pending)
        _copy_result(pgconn, waiting)


def _copy_result(pgconn: pq.abc.PGconn, waiting: select.poll) -> None:
    """Take the final result of a ``COPY`` whose data is over; raise its error, if it is one."""
    while pgconn.is_busy():
        waiting.poll()
        pgconn.consume_input()
    failure = None
    while (result := pgconn.get_result()) is not None:
        if failure is None and result.status == pq.ExecStatus.FATAL_ERROR:
            failure = result
    if failure is not None:
        state = (failure.error_field(pq.DiagnosticField.SQLSTATE) or b"").decode("ascii", "replace")
        # The primary message, as psycopg's own errors say it (error_message is "ERROR:  ...").
        message = (failure.error_field(pq.DiagnosticField.MESSAGE_PRIMARY)
                   or failure.error_message or b"").decode("utf-8", "replace").strip()
        try:
            kind = errors.lookup(state)
        except KeyError:
            kind = psycopg.DatabaseError
        raise kind(message or f"COPY failed (SQLSTATE {state or 'unknown'})")


#: Heap pages one joined chunk covers: about 15,600 rows of the reference's ``users`` (61 a
#: page), and at most 256 x 291 rows (``MaxHeapTuplesPerPage``) of 61 bytes: 4.5 MB of joined
#: text, whatever the table.
CHUNK_PAGES = 256
#: The octets of a well-formed bcrypt hash: the only values the server joins.
JOINED_VALUE_OCTETS = 60
#: The end of a last chunk or part of pages: open, so that no page is left out, however the
#: table's size was measured (the highest block number is one less).
LAST_PAGE_END = 0xFFFF_FFFF
#: The first server whose planner reads a ``ctid`` range as a TID range scan (pages, not
#: the whole table once a chunk).
TID_RANGE_MAJOR = 14


@dataclass(frozen=True)
class JoinedChunk:
    """The rows of a range of heap pages, the values of a bcrypt hash's length
    (:data:`JOINED_VALUE_OCTETS`) joined on the server.

    Attributes:
        first, end: its pages, ``first <= page < end``.
        rows: its rows.
        values: its values of 60 octets (the ones joined).
        others: its other non-NULL values (not joined, so a chunk's text stays bounded
            whatever its values' sizes); ``rows - values - others`` are NULL.
        joined: the 60-octet values as the bytes the server stores, each followed by a
            newline (so a value that holds a newline makes more lines than there are values);
            empty if none.
    """

    first: int
    end: int
    rows: int
    values: int
    others: int
    joined: bytes


def page_span_query(table: str, *, schema: str = "public") -> sql.Composed:
    """A query of one row, run in a transaction whose snapshot is taken: the pages of
    ``schema.table`` (the most of any of its heap relations: itself, its partitions, its
    inheritance children, whose rows a ``SELECT`` of it reads; no row the snapshot sees lies
    beyond them), and whether its rows can be read by ``ctid`` ranges at all: every relation of
    the tree a table or a partitioned table (not a view or a foreign table), and ``ctid``
    readable by this role (one granted only some columns may not read it)."""
    return sql.SQL(
        "WITH RECURSIVE tree(oid) AS (SELECT c.oid FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = {s} AND c.relname = {t}"
        " UNION SELECT h.inhrelid FROM pg_inherits h JOIN tree ON h.inhparent = tree.oid)"
        " SELECT coalesce(max(pg_relation_size(c.oid)), 0) / current_setting('block_size')::bigint,"
        " count(*) > 0 AND bool_and(c.relkind IN ('r', 'p'))"
        " AND bool_or(CASE WHEN c.oid = tree.root AND c.relkind IN ('r', 'p')"
        " THEN has_column_privilege(c.oid, 'ctid', 'SELECT') END)"
        " FROM (SELECT oid, first_value(oid) OVER () AS root FROM tree) AS tree"
        " JOIN pg_class c ON c.oid = tree.oid").format(s=sql.Literal(schema), t=sql.Literal(table))


def ctid_readable_query(table: str, *, schema: str = "public") -> sql.Composed:
    """A query of one value: whether this role may read ``schema.table``'s ``ctid`` (a table,
    not a view, and not one granted only some of its columns)."""
    return sql.SQL(
        "SELECT coalesce((SELECT CASE WHEN EXISTS (SELECT FROM pg_attribute a"
        " WHERE a.attrelid = c.oid AND a.attname = 'ctid')"
        " THEN has_column_privilege(c.oid, 'ctid', 'SELECT') END"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = {s} AND c.relname = {t}), false)").format(
        s=sql.Literal(schema), t=sql.Literal(table))


def pages_named(pages: tuple[int, int]) -> str:
    """``first..last`` of a chunk or part of heap pages, ``first..`` for the last, open one."""
    return f"{pages[0]}..{'' if pages[1] == LAST_PAGE_END else pages[1] - 1}"


def chunk_query(table: str, column: str, *, schema: str = "public") -> sql.Composed:
    """The query of one chunk of pages (``%s``: its first and its end page): its rows, its
    values of 60 octets and the others, and those values joined by newlines. The server reads
    the pages alone (a TID range scan), in no order, and hands over one value a chunk
    (``octet_length`` reads a stored value's size without decompressing it)."""
    hashlike = sql.SQL("FILTER (WHERE octet_length(v) = {n})").format(
        n=sql.Literal(JOINED_VALUE_OCTETS))
    return sql.SQL(
        "SELECT count(*), count(v) {f}, count(v) - count(v) {f}, string_agg(v, E'\\n') {f}"
        " FROM (SELECT {c}::text AS v FROM {s}.{t}"
        " WHERE ctid >= %s::tid AND ctid < %s::tid) AS chunk").format(
        c=sql.Identifier(column), s=sql.Identifier(schema), t=sql.Identifier(table), f=hashlike)


def joined_chunk(cursor: psycopg.Cursor[Any], query: sql.Composed, first: int,
                 end: int) -> JoinedChunk:
    """The chunk of pages ``first <= page < end`` by :func:`chunk_query`, on a session whose
    ``client_encoding`` is ``SQL_ASCII`` (the joined values arrive as the bytes stored)."""
    row = cursor.execute(query, (f"({first},0)", f"({end},0)"), prepare=True).fetchone()
    rows, values, others, joined = row if row is not None else (0, 0, 0, b"")
    return JoinedChunk(first, end, int(rows), int(values or 0), int(others or 0),
                       joined + b"\n" if values else b"")


def key_span_query(table: str, key: str, *, schema: str = "public") -> sql.Composed:
    """A query of one row: the lowest and the highest ``key`` of ``schema.table`` (an index
    lookup each where ``key`` is indexed), and whether a row a ``SELECT`` of the table reads
    may hold a NULL ``key`` (in no range of keys): the column is not ``NOT NULL`` in the table
    or in one of its inheritance children or partitions (a child of plain inheritance may drop
    its parent's ``NOT NULL``)."""
    return sql.SQL(
        "SELECT min({k}), max({k}), EXISTS (WITH RECURSIVE tree(oid) AS ("
        "SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = {s} AND c.relname = {t}"
        " UNION SELECT h.inhrelid FROM pg_inherits h JOIN tree ON h.inhparent = tree.oid)"
        " SELECT FROM pg_attribute a JOIN tree ON a.attrelid = tree.oid"
        " WHERE a.attname = {name} AND NOT a.attnotnull) FROM {schema}.{table}").format(
        k=sql.Identifier(key), s=sql.Literal(schema), t=sql.Literal(table),
        name=sql.Literal(key), schema=sql.Identifier(schema), table=sql.Identifier(table))


def range_copy(table: str, columns: Sequence[str | None], *, schema: str, key: str | None,
               low: int | None, high: int | None,
               sample_percent: float | None = None, null_key: bool = False,
               pages: tuple[int, int] | None = None) -> sql.Composed:
    """The ``COPY`` of ``key, *columns`` of the rows with ``low <= key <= high`` (None:
    unbounded) as text lines, as stored; a column given as None is NULL in its place;
    ``sample_percent`` draws each row with that probability (``TABLESAMPLE BERNOULLI``). With
    ``null_key``, the rows whose ``key`` is NULL instead (``low`` and ``high`` None), their key
    given as the text ``<key> NULL`` (``id NULL``), so that examples name them. With ``pages``
    ``(first, end)``, the rows of those heap pages instead (a chunk read again), whatever their
    key (a NULL one reads ``\\N``). A ``key`` of None is NULL in its place (rows read whole,
    named by nothing)."""
    if (null_key or pages) and (low is not None or high is not None):
        raise ValueError("the rows whose key is NULL, or of some pages, are in no range of keys")
    if key is None and (null_key or low is not None or high is not None):
        raise ValueError("rows named by no key are in no range of keys")
    k = sql.Identifier(key) if key is not None else sql.SQL("NULL::text")
    named = sql.Literal(f"{key} NULL") if null_key else k
    selected = [named, *(sql.Identifier(c) if c else sql.SQL("NULL::text") for c in columns)]
    query = sql.SQL("SELECT {} FROM {}.{}").format(
        sql.SQL(", ").join(selected), sql.Identifier(schema), sql.Identifier(table))
    if sample_percent is not None:
        query += sql.SQL(" TABLESAMPLE BERNOULLI ({})").format(sql.Literal(sample_percent))
    bounds = [sql.SQL("{} {} {}").format(k, sql.SQL(op), sql.Literal(limit))
              for op, limit in ((">=", low), ("<=", high)) if limit is not None]
    if null_key:
        bounds = [sql.SQL("{} IS NULL").format(k)]
    if pages is not None:
        bounds = [sql.SQL("ctid >= {}::tid AND ctid < {}::tid").format(
            sql.Literal(f"({pages[0]},0)"), sql.Literal(f"({pages[1]},0)"))]
    if bounds:
        query += sql.SQL(" WHERE ") + sql.SQL(" AND ").join(bounds)
    return sql.SQL("COPY ({}) TO STDOUT").format(query)
