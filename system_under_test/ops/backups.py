"""Encrypted backups, their 30-day retention and the restore drill.

A backup file ``STATE/backups/votriz-YYYYmmddTHHMMSSZ.dump.enc`` is a sequence
of lines, each one Fernet token under the HSM key ``votriz/backup/key``. The
plaintext of token *i* is ``b"VZB1"``, *i* as 8 bytes big-endian, a 1-byte
"last" flag, then the payload. Token 0 carries a JSON manifest (row counts
taken in the same snapshot as the dump); the following tokens carry
``pg_dump -Fc`` output in chunks of at most 1 MiB; the last token has the
flag set. Indexes and the flag make reordering, splicing and truncation
detectable, which Fernet alone (one token at a time) would not.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from cryptography.fernet import Fernet, InvalidToken

from system_under_test.api.keyring import BACKUP_KEY_LABEL, DB_PASSWORD_LABEL, fernet_key
from system_under_test.ops.context import OpsContext, OpsError

if TYPE_CHECKING:
    import psycopg

# psycopg is imported where a command connects: prune-backups reads only the store's names.

MAGIC = b"VZB1"
CHUNK_HEADER = struct.Struct(">4sQB")
CHUNK_BYTES = 1024 * 1024
FORMAT = "votriz-backup/1"
RETENTION = timedelta(days=30)
NAME_RE = re.compile(r"^votriz-(\d{8}T\d{6}Z)\.dump\.enc$")
NAME_TIME_FORMAT = "%Y%m%dT%H%M%SZ"
PG_BIN_DIRS = ("/usr/lib/postgresql/15/bin",)
PLAIN_DUMP_MAGIC = b"PGDMP"


class BackupFormatError(ValueError):
    """A backup file is not a complete, untampered sequence of our chunks."""


def pg_binary(name: str) -> str:
    """PostgreSQL 15's own ``pg_dump``/``pg_restore`` (the server's version), else PATH's."""
    for directory in PG_BIN_DIRS:
        candidate = Path(directory) / name
        if os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise OpsError(f"{name} not found: apt-get install postgresql-client-15")
    return found


def backup_name(at: datetime) -> str:
    """The file name of a backup taken at ``at``."""
    return f"votriz-{at.astimezone(UTC).strftime(NAME_TIME_FORMAT)}.dump.enc"


def backup_time(name: str) -> datetime | None:
    """When a backup was taken, from its name; None for a file that is not a backup."""
    match = NAME_RE.match(name)
    if not match:
        return None
    return datetime.strptime(match.group(1), NAME_TIME_FORMAT).replace(tzinfo=UTC)


class ChunkWriter:
    """Writes the chunked encrypted stream, one Fernet token per line.

    Attributes:
        chunks: how many chunks were written so far.
    """

    def __init__(self, fernet: Fernet, out: BinaryIO) -> None:
        self._fernet = fernet
        self._out = out
        self.chunks = 0

    def write(self, payload: bytes, *, last: bool = False) -> None:
        """Encrypt and append one chunk."""
        plain = CHUNK_HEADER.pack(MAGIC, self.chunks, 1 if last else 0) + payload
        self._out.write(self._fernet.encrypt(plain) + b"\n")
        self.chunks += 1


def read_chunks(fernet: Fernet, source: BinaryIO) -> Iterator[bytes]:
    """Yield the payloads of a chunked stream in order, checking index, flag and end.

    Raises:
        InvalidToken: a chunk was not made with this key or was altered.
        BackupFormatError: chunks are missing, reordered, or follow the last one.
    """
    expected = 0
    finished = False
    for line in source:
        token = line.rstrip(b"\n")
        if not token:
            continue
        if finished:
            raise BackupFormatError("data after the last chunk")
        plain = fernet.decrypt(token)
        if len(plain) < CHUNK_HEADER.size:
            raise BackupFormatError("chunk too short")
        magic, index, last = CHUNK_HEADER.unpack_from(plain)
        if magic != MAGIC or index != expected:
            raise BackupFormatError(f"chunk {expected} expected, found {index}")
        expected += 1
        finished = bool(last)
        yield plain[CHUNK_HEADER.size:]
    if not finished:
        raise BackupFormatError("the backup is truncated (no last chunk)")


@dataclass(frozen=True)
class DbTarget:
    """Where pg_dump / pg_restore connect, from ``database_dsn``.

    Attributes:
        host: server host.
        port: server port.
        user: role (``votriz_app``).
        dbname: the application database.
    """

    host: str
    port: str
    user: str
    dbname: str

    @classmethod
    def from_dsn(cls, dsn: str) -> DbTarget:
        """Parse the libpq conninfo of ``api.toml``."""
        from psycopg.conninfo import conninfo_to_dict

        params = conninfo_to_dict(dsn)
        return cls(str(params.get("host", "127.0.0.1")), str(params.get("port", "5432")),
                   str(params.get("user", "votriz_app")), str(params.get("dbname", "votriz")))

    def args(self, dbname: str | None = None) -> list[str]:
        """Connection arguments for the PostgreSQL client programs."""
        return ["--no-password", "-h", self.host, "-p", self.port, "-U", self.user,
                "-d", dbname or self.dbname]


def _child_env(password: str) -> dict[str, str]:
    """Environment of pg_dump/pg_restore: the password only here, only for the child."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGPASSWORD"] = password
    return env


def table_counts(conn: psycopg.Connection) -> dict[str, int]:
    """Row count of every table in schema public."""
    from psycopg import sql

    tables = [r[0] for r in conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' "
        "AND table_type = 'BASE TABLE' ORDER BY table_name").fetchall()]
    return {t: conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t))
                            ).fetchone()[0] for t in tables}


def _stderr_tail(handle: BinaryIO) -> str:
    handle.seek(0)
    lines = handle.read().decode("utf-8", "replace").strip().splitlines()
    return lines[-1][:300] if lines else "no message"


STAGING_DIR = "staging"
"""Where the ``backup-staging-kept`` fault keeps its plain copies (a subdirectory of the store)."""


@contextlib.contextmanager
def _staging(ctx: OpsContext, final: Path) -> Iterator[BinaryIO | None]:
    """The ``backup-staging-kept`` fault: a plain copy of pg_dump's output, written to
    ``backups/staging/`` beside the encrypted backup and never removed; else None."""
    if not ctx.has_fault("backup-staging-kept"):
        yield None
        return
    directory = final.parent / STAGING_DIR
    directory.mkdir(mode=0o700, exist_ok=True)
    with open(directory / final.name.removesuffix(".enc"), "wb") as staged:
        yield staged


def backup(ctx: OpsContext, *, now: datetime | None = None) -> dict[str, object]:
    """Dump database votriz through the chunked Fernet stream into ``STATE/backups``."""
    from psycopg import IsolationLevel

    started = time.monotonic()
    now = now or datetime.now(UTC)
    values = ctx.secrets()
    if BACKUP_KEY_LABEL not in values:
        raise OpsError(f"HSM object {BACKUP_KEY_LABEL!r} is missing")
    fernet = Fernet(fernet_key(values[BACKUP_KEY_LABEL]))
    password = values[DB_PASSWORD_LABEL].decode("ascii")
    plaintext = ctx.has_fault("backup-plaintext")
    target = DbTarget.from_dsn(ctx.config.database_dsn)
    backups_dir = ctx.state_dir / "backups"
    backups_dir.mkdir(mode=0o700, exist_ok=True)
    final = backups_dir / backup_name(now)
    partial = final.with_name(final.name + ".partial")
    with ctx.connect(password=password, autocommit=False) as conn, \
            tempfile.TemporaryFile() as errors, _staging(ctx, final) as staged:
        # One snapshot for the counts and the dump, so the drill can compare exactly.
        conn.isolation_level = IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
        counts = table_counts(conn)
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            dump = subprocess.Popen(
                [pg_binary("pg_dump"), "-Fc", f"--snapshot={snapshot}", *target.args()],
                stdout=subprocess.PIPE, stderr=errors, stdin=subprocess.DEVNULL,
                env=_child_env(password))
            assert dump.stdout is not None
            writer = ChunkWriter(fernet, out)
            if not plaintext:
                writer.write(json.dumps({"format": FORMAT, "created": now.isoformat(),
                                         "database": target.dbname,
                                         "row_counts": counts}).encode())
            dump_bytes = 0
            while chunk := dump.stdout.read(CHUNK_BYTES):
                dump_bytes += len(chunk)
                if plaintext:
                    # The backup-plaintext fault: pg_dump's output as it is.
                    out.write(chunk)
                else:
                    writer.write(chunk)
                if staged is not None:
                    staged.write(chunk)
            if not plaintext:
                writer.write(b"", last=True)
            status = dump.wait()
        conn.rollback()
        if status != 0:
            partial.unlink(missing_ok=True)
            raise OpsError(f"pg_dump failed: {_stderr_tail(errors)}")
    partial.rename(final)
    return {"command": "backup", "file": final.name, "encrypted": not plaintext,
            "dump_bytes": dump_bytes, "file_bytes": final.stat().st_size,
            "chunks": 0 if plaintext else writer.chunks, "row_counts": counts,
            "seconds": round(time.monotonic() - started, 2)}


def prune_backups(ctx: OpsContext, *, now: datetime | None = None) -> dict[str, object]:
    """Delete backups older than 30 days, judged by the time in their names."""
    now = now or datetime.now(UTC)
    backups_dir = ctx.state_dir / "backups"
    kept: list[str] = []
    deleted: list[str] = []
    broken_retention = ctx.has_fault("backup-retention-broken")
    for path in sorted(backups_dir.glob("votriz-*.dump.enc")) if backups_dir.is_dir() else []:
        taken = backup_time(path.name)
        if taken is None:
            continue
        if now - taken > RETENTION and not broken_retention:
            path.unlink()
            deleted.append(path.name)
        else:
            kept.append(path.name)
    return {"command": "prune-backups", "now": now.isoformat(), "retention_days": RETENTION.days,
            "kept": kept, "deleted": deleted}


def newest_backup(ctx: OpsContext) -> Path:
    """The most recent backup file by the time in its name."""
    backups_dir = ctx.state_dir / "backups"
    named = [(backup_time(p.name), p) for p in backups_dir.glob("votriz-*.dump.enc")] \
        if backups_dir.is_dir() else []
    named = [(t, p) for t, p in named if t is not None]
    if not named:
        raise OpsError(f"no backup in {backups_dir}")
    return max(named)[1]


def _append_drill(ctx: OpsContext, entry: dict[str, object]) -> None:
    with open(ctx.state_dir / "drills.log", "a", encoding="utf-8") as log:
        log.write(json.dumps(entry, sort_keys=True) + "\n")


def _restore_into(ctx: OpsContext, path: Path, fernet: Fernet, password: str,
                  target: DbTarget, scratch: str) -> dict[str, int] | None:
    """Feed the decrypted dump to pg_restore; return the manifest's row counts (None if plain)."""
    manifest_counts: dict[str, int] | None = None
    with tempfile.TemporaryFile() as errors, open(path, "rb") as source:
        restore = subprocess.Popen(
            [pg_binary("pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error",
             *target.args(scratch)],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errors,
            env=_child_env(password))
        assert restore.stdin is not None
        try:
            if source.read(len(PLAIN_DUMP_MAGIC)) == PLAIN_DUMP_MAGIC:
                source.seek(0)
                while chunk := source.read(CHUNK_BYTES):
                    restore.stdin.write(chunk)
            else:
                source.seek(0)
                chunks = read_chunks(fernet, source)
                manifest = json.loads(next(chunks))
                if manifest.get("format") != FORMAT:
                    raise BackupFormatError("unknown backup format")
                manifest_counts = dict(manifest["row_counts"])
                for payload in chunks:
                    restore.stdin.write(payload)
        except BrokenPipeError:
            # pg_restore stopped reading; its exit status below says why.
            pass
        finally:
            with contextlib.suppress(BrokenPipeError):
                restore.stdin.close()
            status = restore.wait()
        if status != 0:
            raise OpsError(f"pg_restore failed: {_stderr_tail(errors)}")
    return manifest_counts


def restore_drill(ctx: OpsContext, *, now: datetime | None = None) -> dict[str, object]:
    """Restore the newest backup into a scratch database, compare row counts, drop it,
    and append the outcome to ``STATE/drills.log``.
    """
    from psycopg import sql

    started = time.monotonic()
    now = now or datetime.now(UTC)
    path = newest_backup(ctx)
    values = ctx.secrets()
    password = values[DB_PASSWORD_LABEL].decode("ascii")
    target = DbTarget.from_dsn(ctx.config.database_dsn)
    entry: dict[str, object] = {"time": now.isoformat(), "backup": path.name}
    if os.environ.get("VOTRIZ_AUDIT_RUN"):
        # An auditor's drill says so: its next run leaves it out of the operator's history.
        entry["requested_by"] = os.environ["VOTRIZ_AUDIT_RUN"]
    if ctx.has_fault("restore-drill-broken"):
        # The fault: success is reported from the live database, nothing is restored.
        with ctx.connect(password=password) as conn:
            live = table_counts(conn)
        entry.update(ok=True, scratch_database=None,
                     tables={t: {"expected": n, "restored": n} for t, n in live.items()},
                     seconds=round(time.monotonic() - started, 2))
        _append_drill(ctx, entry)
        return {"command": "restore-drill", **entry}
    scratch = f"votriz_drill_{now.strftime('%Y%m%d%H%M%S')}_{secrets.token_hex(3)}"
    entry["scratch_database"] = scratch
    fernet = Fernet(fernet_key(values[BACKUP_KEY_LABEL]))
    with ctx.connect(password=password) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(scratch)))
        try:
            expected = _restore_into(ctx, path, fernet, password, target, scratch)
            with ctx.connect(dbname=scratch, password=password) as conn:
                restored = table_counts(conn)
            names = sorted(set(restored) | set(expected or {}))
            tables = {t: {"expected": (expected or {}).get(t), "restored": restored.get(t)}
                      for t in names}
            mismatched = [t for t, c in tables.items()
                          if expected is not None and c["expected"] != c["restored"]]
            entry.update(ok=not mismatched and bool(restored), tables=tables,
                         manifest=expected is not None)
            if mismatched:
                entry["error"] = f"row counts differ in {', '.join(mismatched)}"
            elif not restored:
                entry["error"] = "nothing was restored"
        except (OpsError, InvalidToken, BackupFormatError, ValueError, KeyError) as exc:
            reason = str(exc) if isinstance(exc, OpsError | BackupFormatError) \
                else f"backup cannot be decrypted ({type(exc).__name__})"
            entry.update(ok=False, error=reason)
        finally:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(scratch)))
    entry["seconds"] = round(time.monotonic() - started, 2)
    _append_drill(ctx, entry)
    if not entry["ok"]:
        raise OpsError(f"restore drill failed: {entry['error']}")
    return {"command": "restore-drill", **entry}
