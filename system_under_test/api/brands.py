"""The brand endpoints: brands, their channels (OAuth tokens Fernet-encrypted per row), the
platform sync, captions from the LLM and the aggregate analytics."""

from __future__ import annotations

import httpx
import psycopg
from cryptography.fernet import InvalidToken

from system_under_test.api.calls import Call, log
from system_under_test.api.validation import (
    ApiError,
    path_id,
    platform_field,
    required_text,
)

LLM_MODEL = "claude-3-5-haiku-latest"


# --- brands, channels, captions, analytics ------------------------------------------------


def _owned_brand(conn: psycopg.Connection, user_id: int, raw_id: str) -> int:
    brand_id = path_id(raw_id)
    row = conn.execute("SELECT id FROM brands WHERE id = %s AND owner_id = %s",
                       (brand_id, user_id)).fetchone()
    if row is None:
        raise ApiError(404, "brand not found")
    return brand_id


def create_brand(call: Call) -> tuple[int, object]:
    """Create a brand (name and industry are public by design)."""
    name = required_text(call.body, "name", max_len=200)
    industry = required_text(call.body, "industry", max_len=200)
    with call.services.pool.connection() as conn, conn.transaction():
        brand_id = conn.execute(
            "INSERT INTO brands (owner_id, name, industry) VALUES (%s, %s, %s) RETURNING id",
            (call.uid, name, industry)).fetchone()[0]
        conn.execute("INSERT INTO analytics_counters (brand_id) VALUES (%s)", (brand_id,))
    return 201, {"id": brand_id}


def list_brands(call: Call) -> tuple[int, object]:
    """The caller's brands."""
    with call.services.pool.connection() as conn:
        rows = conn.execute("SELECT id, name, industry FROM brands WHERE owner_id = %s ORDER BY id",
                            (call.uid,)).fetchall()
    return 200, {"brands": [{"id": i, "name": n, "industry": ind} for i, n, ind in rows]}


def create_channel(call: Call) -> tuple[int, object]:
    """Connect a platform account: both OAuth tokens encrypted per row."""
    services = call.services
    platform = platform_field(call.body)
    access = required_text(call.body, "access_token", max_len=4096)
    refresh = required_text(call.body, "refresh_token", max_len=4096)
    if services.config.has_fault("token-plaintext") and platform == "tiktok":
        access_enc, refresh_enc = access, refresh
    else:
        access_enc, refresh_enc = services.cipher.encrypt(access), services.cipher.encrypt(refresh)
    with services.pool.connection() as conn:
        brand_id = _owned_brand(conn, call.uid, call.params["brand_id"])
        channel_id = conn.execute(
            "INSERT INTO channels (brand_id, platform, access_token_enc, refresh_token_enc) "
            "VALUES (%s, %s, %s, %s) RETURNING id",
            (brand_id, platform, access_enc, refresh_enc)).fetchone()[0]
    return 201, {"id": channel_id}


def list_channels(call: Call) -> tuple[int, object]:
    """A brand's channels, without their tokens."""
    with call.services.pool.connection() as conn:
        brand_id = _owned_brand(conn, call.uid, call.params["brand_id"])
        rows = conn.execute(
            "SELECT id, platform, external_account, created_at, updated_at FROM channels "
            "WHERE brand_id = %s ORDER BY id", (brand_id,)).fetchall()
    return 200, {"channels": [
        {"id": i, "platform": p, "external_account": a,
         "created_at": c.isoformat(), "updated_at": u.isoformat()} for i, p, a, c, u in rows]}


def _owned_channel(conn: psycopg.Connection, user_id: int, raw_id: str) -> tuple[int, str, str]:
    channel_id = path_id(raw_id)
    row = conn.execute(
        "SELECT c.id, c.platform, c.access_token_enc FROM channels c "
        "JOIN brands b ON b.id = c.brand_id WHERE c.id = %s AND b.owner_id = %s",
        (channel_id, user_id)).fetchone()
    if row is None:
        raise ApiError(404, "channel not found")
    return row


def update_channel_tokens(call: Call) -> tuple[int, object]:
    """Replace a channel's tokens (a write that encrypts under the primary key)."""
    services = call.services
    access = required_text(call.body, "access_token", max_len=4096)
    refresh = required_text(call.body, "refresh_token", max_len=4096)
    with services.pool.connection() as conn:
        channel_id, _, _ = _owned_channel(conn, call.uid, call.params["channel_id"])
        conn.execute(
            "UPDATE channels SET access_token_enc = %s, refresh_token_enc = %s, updated_at = now() "
            "WHERE id = %s",
            (services.cipher.encrypt(access), services.cipher.encrypt(refresh), channel_id))
    return 200, {"id": channel_id}


def _upstream_json(response: httpx.Response, what: str) -> dict[str, object]:
    if response.status_code >= 400:
        raise ApiError(502, f"{what} answered {response.status_code}")
    try:
        data = response.json()
    except ValueError:
        raise ApiError(502, f"{what} answered no JSON") from None
    if not isinstance(data, dict):
        raise ApiError(502, f"{what} answered no JSON object")
    return data


def sync_channel(call: Call) -> tuple[int, object]:
    """Decrypt the access token and ask the platform who it belongs to."""
    services = call.services
    with services.pool.connection() as conn:
        channel_id, platform, access_enc = _owned_channel(conn, call.uid, call.params["channel_id"])
    try:
        access = (services.cipher.decrypt_or_raw(access_enc)
                  if services.config.has_fault("token-plaintext")
                  else services.cipher.decrypt(access_enc))
    except InvalidToken:
        log.error("channel token undecryptable", extra={"fields": {"channel_id": channel_id}})
        return 500, {"error": "stored token cannot be decrypted"}
    try:
        response = services.http.get(f"{services.config.platform_base_url}/{platform}/me",
                                      headers={"Authorization": f"Bearer {access}"})
    except httpx.HTTPError as exc:
        raise ApiError(502, f"{platform} unreachable ({type(exc).__name__})") from None
    data = _upstream_json(response, platform)
    account = next((str(data[k]) for k in ("account", "username", "name", "id") if k in data), "")
    with services.pool.connection() as conn:
        conn.execute("UPDATE channels SET external_account = %s WHERE id = %s",
                     (account[:200], channel_id))
    return 200, {"platform": platform, "account": account}


def _caption_text(data: dict[str, object]) -> str:
    content = data.get("content")
    if isinstance(content, list):
        texts = [part.get("text") for part in content if isinstance(part, dict)]
        joined = "".join(t for t in texts if isinstance(t, str))
        if joined:
            return joined
    raise ApiError(502, "LLM answered no text")


def create_caption(call: Call) -> tuple[int, object]:
    """Ask the LLM for a caption; store prompt and caption encrypted."""
    services = call.services
    prompt = required_text(call.body, "prompt", max_len=4000)
    with services.pool.connection() as conn:
        brand_id = _owned_brand(conn, call.uid, call.params["brand_id"])
    try:
        response = services.http.post(
            f"{services.config.llm_base_url}/v1/messages",
            headers={"x-api-key": services.keyring.provider_keys.get("anthropic", ""),
                     "anthropic-version": "2023-06-01"},
            json={"model": LLM_MODEL, "max_tokens": 300,
                  "messages": [{"role": "user", "content": prompt}]})
    except httpx.HTTPError as exc:
        raise ApiError(502, f"LLM unreachable ({type(exc).__name__})") from None
    caption = _caption_text(_upstream_json(response, "LLM"))
    with services.pool.connection() as conn:
        caption_id = conn.execute(
            "INSERT INTO captions (brand_id, prompt_enc, caption_enc) VALUES (%s, %s, %s) "
            "RETURNING id",
            (brand_id, services.cipher.encrypt(prompt), services.cipher.encrypt(caption)),
        ).fetchone()[0]
    return 201, {"id": caption_id, "caption": caption}


def brand_analytics(call: Call) -> tuple[int, object]:
    """The brand's aggregate counters (plaintext by design: no PII)."""
    with call.services.pool.connection() as conn:
        brand_id = _owned_brand(conn, call.uid, call.params["brand_id"])
        row = conn.execute(
            "SELECT post_count, engagement_rate FROM analytics_counters WHERE brand_id = %s",
            (brand_id,)).fetchone()
    post_count, rate = row if row is not None else (0, 0)
    return 200, {"post_count": post_count, "engagement_rate": float(rate)}
