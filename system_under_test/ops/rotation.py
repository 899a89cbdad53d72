"""Key rotations: token-encryption key, JWT secret, database and Redis passwords.

Each rotation puts the new value into the HSM first and then rolls the API's
workers, which read keys only at process start. The token-encryption key is
rotated in stages (decrypt-only first, then primary, then rewrite, then
retire), so that no worker ever meets a row it cannot decrypt.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from system_under_test.api.keyring import (
    DB_PASSWORD_LABEL,
    JWT_LABEL,
    JWT_PREVIOUS_LABEL,
    REDIS_PASSWORD_LABEL,
    TOKEN_KEY_PREFIX,
    destroy_secret,
    fernet_key,
    put_secret,
    read_decrypt_only,
    read_secrets,
    set_encrypt_allowed,
    token_key_versions,
)
from system_under_test.ops.context import OpsContext, OpsError
from system_under_test.ops.workers import Roll, roll_workers

if TYPE_CHECKING:
    import psycopg

# psycopg and redis are imported by the rotations that use them (see ops.__main__._ops).
BATCH_SIZE = 500

# Every Fernet column, by table: all are under the token-encryption ring, so
# all must be rewritten before an old key version may be destroyed.
FERNET_COLUMNS: dict[str, tuple[str, ...]] = {
    "channels": ("access_token_enc", "refresh_token_enc"),
    "users": ("email_enc", "totp_secret_enc"),
    "captions": ("prompt_enc", "caption_enc"),
}


def _rotate_value(ring: MultiFernet, value: str | None) -> tuple[str | None, bool]:
    """``value`` re-encrypted under the ring's first key; (value, False) if it is not ours."""
    if value is None:
        return None, True
    try:
        return ring.rotate(value.encode("ascii")).decode("ascii"), True
    except (InvalidToken, UnicodeError):
        return value, False


def reencrypt_table(conn: psycopg.Connection, ring: MultiFernet, table: str,
                    columns: tuple[str, ...], *, batch_size: int = BATCH_SIZE,
                    skip_last_batch: bool = False) -> dict[str, int]:
    """Rewrite every row of ``table`` under the ring's primary key, one short transaction
    per batch (rows locked only for that batch, so the API keeps serving).

    ``skip_last_batch`` is the ``rotation-leaves-rows`` fault.
    """
    from psycopg import sql

    ident = sql.Identifier(table)
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    last_id = conn.execute(sql.SQL("SELECT coalesce(max(id), 0) FROM {}").format(ident)
                           ).fetchone()[0]
    select = sql.SQL("SELECT id, {} FROM {} WHERE id > %s AND id <= %s ORDER BY id LIMIT %s "
                     "FOR UPDATE").format(cols, ident)
    update = sql.SQL("UPDATE {} SET {} WHERE id = %s").format(
        ident, sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in columns))
    counts = {"rows": 0, "batches": 0, "unreadable": 0, "skipped": 0}
    cursor_id = 0
    while True:
        with conn.transaction():
            rows = conn.execute(select, (cursor_id, last_id, batch_size)).fetchall()
            if not rows:
                break
            cursor_id = rows[-1][0]
            if skip_last_batch and cursor_id == last_id:
                counts["skipped"] += len(rows)
                break
            params = []
            for row_id, *values in rows:
                rotated = [_rotate_value(ring, v) for v in values]
                counts["unreadable"] += sum(1 for _, ok in rotated if not ok)
                params.append([v for v, _ in rotated] + [row_id])
            with conn.cursor() as cur:
                cur.executemany(update, params)
            counts["rows"] += len(rows)
            counts["batches"] += 1
    return counts


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class _Phases:
    """The phases of one command, each with its start time (UTC) and duration.

    Every phase is also appended to ``STATE/logs/ops.log`` as it ends, so an
    operator (or an auditor) can line the phases up with the load while the
    command still runs; stdout keeps its one JSON line.
    """

    def __init__(self, ctx: OpsContext, command: str) -> None:
        self._ctx, self._command = ctx, command
        self.done: list[dict[str, object]] = []

    def run(self, name: str, action: Callable[[], dict[str, object]]) -> dict[str, object]:
        started_at, started = _now_iso(), time.monotonic()
        details = action()
        entry = {"phase": name, "started": started_at, "finished": _now_iso(),
                 "seconds": round(time.monotonic() - started, 2), **details}
        self.done.append(entry)
        logs = self._ctx.state_dir / "logs"
        if logs.is_dir():
            with open(logs / "ops.log", "a", encoding="utf-8") as handle:
                handle.write(json.dumps({"time": entry["finished"], "command": self._command,
                                         "progress": entry}, default=str) + "\n")
        return details


def rotate_token_key(ctx: OpsContext, *, batch_size: int = BATCH_SIZE) -> dict[str, object]:
    """Rotate the token-encryption key in four phases, with no request failing on the way.

    1. ``stage``: create vN+1 in the HSM *decrypt-only* (``CKA_ENCRYPT`` False) and roll
       the workers: every worker can now read rows under vN+1, none writes under it.
    2. ``promote``: set ``CKA_ENCRYPT`` True on vN+1 and roll: every worker now writes
       under vN+1 and still reads vN (a worker still on the old ring can read what a
       new one wrote, because it already knew vN+1 from phase 1).
    3. ``rewrite``: re-encrypt every Fernet column under vN+1 in batches (MultiFernet.rotate).
    4. ``retire``: destroy every older version and roll, so no process holds them.

    A staged (decrypt-only) key left by an interrupted run is reused as vN+1.
    """
    started = time.monotonic()
    phases = _Phases(ctx, "rotate-token-key")
    rolls: list[Roll] = []
    with ctx.hsm() as session:
        versions = token_key_versions(read_secrets(session))
        staged = {v for v, label in versions.items() if label in read_decrypt_only(session)}
    if not versions:
        raise OpsError(f"no {TOKEN_KEY_PREFIX}N key in the HSM")
    new_version = max(staged) if staged else max(versions) + 1
    new_label = f"{TOKEN_KEY_PREFIX}{new_version}"

    def stage() -> dict[str, object]:
        if new_version not in versions:
            with ctx.hsm(rw=True) as session:
                put_secret(session, new_label, session.generate_random(256),
                           str(new_version).encode("ascii"), decrypt_only=True)
        rolls.append(roll_workers(ctx))
        return {"version": new_version, "decrypt_only": True, "reused": new_version in versions,
                "roll": rolls[-1].summary()}

    def promote() -> dict[str, object]:
        with ctx.hsm(rw=True) as session:
            if not set_encrypt_allowed(session, new_label, True):
                raise OpsError(f"{new_label} vanished from the HSM during the rotation")
        rolls.append(roll_workers(ctx))
        return {"primary": new_version, "roll": rolls[-1].summary()}

    tables: dict[str, dict[str, int]] = {}
    retired: list[int] = []

    def rewrite() -> dict[str, object]:
        values = ctx.secrets()
        ring_versions = token_key_versions(values)
        if new_version not in ring_versions:
            raise OpsError(f"{new_label} vanished from the HSM during the rotation")
        retired.extend(sorted((v for v in ring_versions if v != new_version), reverse=True))
        # rotate() re-encrypts under the first key: the new one.
        ring = MultiFernet([Fernet(fernet_key(values[ring_versions[v]]))
                            for v in [new_version, *retired]])
        rewrite_started = time.monotonic()
        with ctx.connect() as conn:
            for table, columns in FERNET_COLUMNS.items():
                tables[table] = reencrypt_table(
                    conn, ring, table, columns, batch_size=batch_size,
                    skip_last_batch=ctx.has_fault("rotation-leaves-rows") and table == "channels")
        seconds = time.monotonic() - rewrite_started
        rows = sum(t["rows"] for t in tables.values())
        return {"rows": rows, "batches": sum(t["batches"] for t in tables.values()),
                "rows_per_second": round(rows / max(seconds, 1e-6))}

    def retire() -> dict[str, object]:
        with ctx.hsm(rw=True) as session:
            for version in retired:
                destroy_secret(session, f"{TOKEN_KEY_PREFIX}{version}")
        rolls.append(roll_workers(ctx))
        return {"retired": list(retired), "roll": rolls[-1].summary()}

    phases.run("stage", stage)
    phases.run("promote", promote)
    rewritten = phases.run("rewrite", rewrite)
    phases.run("retire", retire)
    channels = tables["channels"]
    return {
        "command": "rotate-token-key",
        "rows": channels["rows"],
        "batches": channels["batches"],
        "batch_size": batch_size,
        "versions": {"new": new_version, "retired": retired},
        "tables": tables,
        "rows_per_second": rewritten["rows_per_second"],
        "rolls": [roll.summary() for roll in rolls],
        "phases": phases.done,
        "seconds": round(time.monotonic() - started, 2),
    }


def rotate_jwt_secret(ctx: OpsContext) -> dict[str, object]:
    """Replace the JWT signing secret and roll workers: every session signed before is void."""
    started = time.monotonic()
    keep_previous = ctx.has_fault("jwt-rotation-keeps-sessions")
    with ctx.hsm(rw=True) as session:
        old = read_secrets(session).get(JWT_LABEL)
        put_secret(session, JWT_LABEL, session.generate_random(256))
        if keep_previous and old is not None:
            # The fault: the old secret stays in the token and the API still accepts it.
            put_secret(session, JWT_PREVIOUS_LABEL, old)
        else:
            destroy_secret(session, JWT_PREVIOUS_LABEL)
    roll = roll_workers(ctx)
    return {"command": "rotate-jwt-secret", "roll": roll.summary(),
            "seconds": round(time.monotonic() - started, 2)}


def rotate_db_password(ctx: OpsContext) -> dict[str, object]:
    """New password for ``votriz_app``: into the HSM, ALTER ROLE, roll workers.

    The ``db-password-rotation-ignored`` fault goes through the motions
    (workers are rolled, the same JSON is printed) but changes nothing, so
    the old password stays valid.
    """
    import psycopg
    from psycopg import sql

    started = time.monotonic()
    old_password = ctx.db_password()
    changed = not ctx.has_fault("db-password-rotation-ignored")
    if changed:
        new_password = secrets.token_hex(24)
        with ctx.connect(password=old_password) as conn:
            with ctx.hsm(rw=True) as session:
                put_secret(session, DB_PASSWORD_LABEL, new_password.encode("ascii"))
            try:
                user = conn.info.user
                # The server gets a SCRAM verifier, never the password itself.
                verifier = conn.pgconn.encrypt_password(
                    new_password.encode(), user.encode(), b"scram-sha-256").decode("ascii")
                conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    sql.Identifier(user), sql.Literal(verifier)))
            except psycopg.Error as exc:
                with ctx.hsm(rw=True) as session:
                    put_secret(session, DB_PASSWORD_LABEL, old_password.encode("ascii"))
                raise OpsError(f"ALTER ROLE failed ({type(exc).__name__}); "
                               "the HSM keeps the old password") from None
    roll = roll_workers(ctx)
    return {"command": "rotate-db-password", "roll": roll.summary(),
            "seconds": round(time.monotonic() - started, 2)}


def rotate_redis_password(ctx: OpsContext) -> dict[str, object]:
    """New Redis password: into the HSM (or the fallback file), CONFIG SET, roll workers.

    The ``redis-password-rotation-ignored`` fault goes through the motions (workers
    are rolled, the same JSON is printed) but changes nothing, so the old password
    stays valid.
    """
    import redis

    started = time.monotonic()
    if ctx.has_fault("redis-password-rotation-ignored"):
        roll = roll_workers(ctx)
        return {"command": "rotate-redis-password", "store": "hsm", "roll": roll.summary(),
                "seconds": round(time.monotonic() - started, 2)}
    old_password = ctx.keyring().redis_password
    new_password = secrets.token_hex(24)
    client = redis.Redis(host=ctx.config.redis_host, port=ctx.config.redis_port,
                         password=old_password, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise OpsError(f"cannot reach Redis with the current password ({type(exc).__name__})") \
            from None
    in_hsm = REDIS_PASSWORD_LABEL in ctx.secrets()
    if in_hsm:
        with ctx.hsm(rw=True) as session:
            put_secret(session, REDIS_PASSWORD_LABEL, new_password.encode("ascii"))
    elif ctx.config.redis_password_file:
        # The key-not-in-hsm setup keeps the password in a file; keep it there.
        fd = os.open(ctx.config.redis_password_file, os.O_WRONLY | os.O_TRUNC | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(new_password + "\n")
    try:
        client.config_set("requirepass", new_password)
    except redis.RedisError as exc:
        if in_hsm:
            with ctx.hsm(rw=True) as session:
                put_secret(session, REDIS_PASSWORD_LABEL, old_password.encode("ascii"))
        raise OpsError(f"CONFIG SET requirepass failed ({type(exc).__name__})") from None
    finally:
        client.close()
    roll = roll_workers(ctx)
    return {"command": "rotate-redis-password", "store": "hsm" if in_hsm else "file",
            "roll": roll.summary(), "seconds": round(time.monotonic() - started, 2)}
