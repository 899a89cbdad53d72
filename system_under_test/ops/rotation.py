"""Key rotations: token-encryption key, JWT secret, database and Redis passwords.

Each rotation puts the new value into the HSM first and then rolls the API's
workers, which read keys only at process start.
"""

from __future__ import annotations

import os
import secrets
import time

import psycopg
import redis
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from psycopg import sql

from system_under_test.api.keyring import (
    DB_PASSWORD_LABEL,
    JWT_LABEL,
    JWT_PREVIOUS_LABEL,
    REDIS_PASSWORD_LABEL,
    TOKEN_KEY_PREFIX,
    destroy_secret,
    fernet_key,
    put_secret,
    read_secrets,
    token_key_versions,
)
from system_under_test.ops.context import OpsContext, OpsError
from system_under_test.ops.workers import roll_workers

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


def rotate_token_key(ctx: OpsContext, *, batch_size: int = BATCH_SIZE) -> dict[str, object]:
    """Add key vN+1, roll workers, rewrite every encrypted row, destroy the old versions,
    roll again.
    """
    started = time.monotonic()
    with ctx.hsm(rw=True) as session:
        versions = token_key_versions(read_secrets(session))
        if not versions:
            raise OpsError(f"no {TOKEN_KEY_PREFIX}N key in the HSM")
        new_version = max(versions) + 1
        put_secret(session, f"{TOKEN_KEY_PREFIX}{new_version}", session.generate_random(256),
                   str(new_version).encode("ascii"))
    # Workers first: from here on every write uses vN+1, so rows rewritten
    # below cannot be overwritten under an old key afterwards.
    first_roll = roll_workers(ctx)
    values = ctx.secrets()
    ring_versions = sorted(token_key_versions(values), reverse=True)
    ring = MultiFernet([Fernet(fernet_key(values[f"{TOKEN_KEY_PREFIX}{v}"]))
                        for v in ring_versions])
    tables: dict[str, dict[str, int]] = {}
    rewrite_started = time.monotonic()
    with ctx.connect() as conn:
        for table, columns in FERNET_COLUMNS.items():
            tables[table] = reencrypt_table(
                conn, ring, table, columns, batch_size=batch_size,
                skip_last_batch=ctx.has_fault("rotation-leaves-rows") and table == "channels")
    rewrite_seconds = time.monotonic() - rewrite_started
    retired = [v for v in ring_versions if v != new_version]
    with ctx.hsm(rw=True) as session:
        for version in retired:
            destroy_secret(session, f"{TOKEN_KEY_PREFIX}{version}")
    second_roll = roll_workers(ctx)
    channels = tables["channels"]
    return {
        "command": "rotate-token-key",
        "rows": channels["rows"],
        "batches": channels["batches"],
        "batch_size": batch_size,
        "versions": {"new": new_version, "retired": retired},
        "tables": tables,
        "rows_per_second": round(sum(t["rows"] for t in tables.values())
                                 / max(rewrite_seconds, 1e-6)),
        "rolls": [first_roll.summary(), second_roll.summary()],
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
    """New Redis password: into the HSM (or the fallback file), CONFIG SET, roll workers."""
    started = time.monotonic()
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
