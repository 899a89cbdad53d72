"""Schema migration and demo/bulk data, written with the application's own encryption code."""

from __future__ import annotations

import secrets
import time

import psycopg

from system_under_test.api.db import apply_schema
from system_under_test.api.fieldcrypto import FieldCipher, email_index
from system_under_test.api.keyring import EMAIL_INDEX_LABEL, put_secret, read_secrets
from system_under_test.api.passwords import hash_secret
from system_under_test.api.validation import PLATFORMS
from system_under_test.ops.context import OpsContext

DEMO_EMAIL = "demo@votriz.test"
BULK_EMAIL = "bulk-channels@votriz.test"


def migrate(ctx: OpsContext) -> dict[str, object]:
    """Apply ``schema.sql`` (idempotent) and make sure the e-mail index key exists."""
    started = time.monotonic()
    created_index_key = False
    with ctx.hsm(rw=True) as session:
        if EMAIL_INDEX_LABEL not in read_secrets(session):
            # The key is lookup-only and never rotated; a stack that did not
            # provision it gets one here, before any user row exists.
            put_secret(session, EMAIL_INDEX_LABEL, session.generate_random(256))
            created_index_key = True
    with ctx.connect() as conn:
        apply_schema(conn, ctx.config.faults)
        tables = [r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' "
            "ORDER BY table_name").fetchall()]
    return {"command": "migrate", "tables": tables, "created_email_index_key": created_index_key,
            "seconds": round(time.monotonic() - started, 2)}


def _user_id(conn: psycopg.Connection, cipher: FieldCipher, index_key: bytes,
             email: str) -> tuple[int, bool]:
    """The id of the user with ``email``, created with a random unknown password if absent."""
    index = email_index(index_key, email)
    row = conn.execute("SELECT id FROM users WHERE email_index = %s", (index,)).fetchone()
    if row is not None:
        return row[0], False
    password_hash = hash_secret(secrets.token_urlsafe(24))
    row = conn.execute(
        "INSERT INTO users (email_enc, email_index, password_hash) VALUES (%s, %s, %s) "
        "RETURNING id", (cipher.encrypt(email), index, password_hash)).fetchone()
    return row[0], True


def seed_demo(ctx: OpsContext) -> dict[str, object]:
    """A demo user (unknown password) with two brands, one channel per platform, a caption
    and analytics counters. Idempotent: an existing demo user is left as it is.
    """
    keyring = ctx.keyring()
    cipher = FieldCipher(keyring, fixed_iv=ctx.has_fault("token-fixed-iv"))
    with ctx.connect() as conn, conn.transaction():
        user_id, created = _user_id(conn, cipher, keyring.email_index_key, DEMO_EMAIL)
        if not created:
            return {"command": "seed-demo", "user_id": user_id, "created": False}
        brands = []
        for name, industry, posts, rate in (("Northwind Coffee", "food & beverage", 128, 0.043),
                                            ("Lumen Outdoor", "retail", 57, 0.061)):
            brand_id = conn.execute(
                "INSERT INTO brands (owner_id, name, industry) VALUES (%s, %s, %s) RETURNING id",
                (user_id, name, industry)).fetchone()[0]
            conn.execute("INSERT INTO analytics_counters (brand_id, post_count, engagement_rate) "
                         "VALUES (%s, %s, %s)", (brand_id, posts, rate))
            brands.append(brand_id)
        channels = []
        for platform in PLATFORMS:
            access, refresh = _fake_tokens(platform)
            stored = ((access, refresh) if ctx.has_fault("token-plaintext") and platform == "tiktok"
                      else (cipher.encrypt(access), cipher.encrypt(refresh)))
            channels.append(conn.execute(
                "INSERT INTO channels (brand_id, platform, external_account, access_token_enc, "
                "refresh_token_enc) VALUES (%s, %s, %s, %s, %s) RETURNING id",
                (brands[0], platform, f"northwind-{platform}", *stored)).fetchone()[0])
        conn.execute("INSERT INTO captions (brand_id, prompt_enc, caption_enc) VALUES (%s, %s, %s)",
                     (brands[0], cipher.encrypt("Autumn blend launch, warm tone"),
                      cipher.encrypt("Cosy mornings are back: meet our Autumn blend.")))
    return {"command": "seed-demo", "user_id": user_id, "created": True, "brands": brands,
            "channels": channels}


def _fake_tokens(platform: str) -> tuple[str, str]:
    """Random OAuth-looking tokens (made up here, never real credentials)."""
    return (f"{platform[:2]}at_{secrets.token_urlsafe(32)}",
            f"{platform[:2]}rt_{secrets.token_urlsafe(32)}")


def seed_channels(ctx: OpsContext, count: int) -> dict[str, object]:
    """Insert ``count`` channels under one bulk brand, fast (COPY), encrypted as the API does."""
    started = time.monotonic()
    keyring = ctx.keyring()
    cipher = FieldCipher(keyring, fixed_iv=ctx.has_fault("token-fixed-iv"))
    with ctx.connect() as conn:
        with conn.transaction():
            user_id, _ = _user_id(conn, cipher, keyring.email_index_key, BULK_EMAIL)
            row = conn.execute("SELECT id FROM brands WHERE owner_id = %s ORDER BY id LIMIT 1",
                               (user_id,)).fetchone()
            brand_id = row[0] if row else conn.execute(
                "INSERT INTO brands (owner_id, name, industry) VALUES (%s, 'Bulk', 'testing') "
                "RETURNING id", (user_id,)).fetchone()[0]
        encrypt_started = time.monotonic()
        with conn.transaction(), conn.cursor() as cur, cur.copy(
                "COPY channels (brand_id, platform, access_token_enc, refresh_token_enc) "
                "FROM STDIN") as copy:
            for i in range(count):
                platform = PLATFORMS[i % len(PLATFORMS)]
                access, refresh = _fake_tokens(platform)
                copy.write_row((brand_id, platform, cipher.encrypt(access),
                                cipher.encrypt(refresh)))
        seconds = time.monotonic() - encrypt_started
    return {"command": "seed-channels", "count": count, "brand_id": brand_id,
            "rows_per_second": round(count / max(seconds, 1e-6)),
            "seconds": round(time.monotonic() - started, 2)}
