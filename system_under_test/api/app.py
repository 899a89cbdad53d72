"""The Starlette application: accounts, MFA, recovery, brands, channels, captions.

Handlers are plain functions run in Starlette's thread pool, because bcrypt,
psycopg and the outbound calls all block. An async wrapper reads and checks
the request (size, JSON, bearer token) first, so every bad input becomes a
4xx ``{"error": ...}`` before any handler runs.
"""

from __future__ import annotations

import functools
import hmac
import json
import logging
import secrets
import ssl
import sys
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import httpx
import jwt
import psycopg
import pyotp
import redis
from cryptography.fernet import InvalidToken
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from system_under_test.api import passwords
from system_under_test.api.config import ApiConfig
from system_under_test.api.db import (
    FAULT_COLUMNS,
    ConnectionPool,
    PoolTimeout,
    apply_fault_columns,
)
from system_under_test.api.fieldcrypto import FieldCipher, email_index
from system_under_test.api.keyring import KeyRing, load_keyring
from system_under_test.api.validation import (
    ApiError,
    email_field,
    password_field,
    path_id,
    platform_field,
    required_text,
    text_field,
)

MAX_BODY_BYTES = 64 * 1024
JWT_LIFETIME = timedelta(hours=1)
RECOVERY_LIFETIME = timedelta(minutes=15)
BACKUP_CODE_COUNT = 10
LOGIN_ATTEMPTS_PER_WINDOW = 10
LOGIN_WINDOW_SECONDS = 300
LLM_MODEL = "claude-3-5-haiku-latest"
# An alphabet without look-alike characters for codes a person types.
CODE_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"

log = logging.getLogger("votriz.api")
# bcrypt releases the GIL, so hashing ten backup codes on a few threads is
# faster than one after another.
_bcrypt_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="bcrypt")


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the ``fields`` extra."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        return json.dumps(entry, default=str)


def configure_logging() -> None:
    """Send the API's structured log lines to stderr, where gunicorn collects them."""
    if any(isinstance(h.formatter, JsonLogFormatter) for h in log.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLogFormatter())
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


@dataclass
class Services:
    """What a handler may use. Tests build one with their own seams.

    Attributes:
        config: the API configuration.
        keyring: the keys read from the HSM at start.
        pool: PostgreSQL connections.
        redis: the Redis client (login rate limiting).
        http: the outbound HTTPS client (LLM, Resend, platforms).
        cipher: field encryption under the token-encryption ring.
    """

    config: ApiConfig
    keyring: KeyRing
    pool: ConnectionPool
    redis: redis.Redis
    http: httpx.Client
    cipher: FieldCipher = field(init=False)

    def __post_init__(self) -> None:
        self.cipher = FieldCipher(self.keyring, fixed_iv=self.config.has_fault("token-fixed-iv"))

    @property
    def bcrypt_cost(self) -> int:
        """The bcrypt cost new hashes get."""
        return passwords.WEAK_COST if self.config.has_fault("bcrypt-cost-10") else passwords.COST

    def email_index(self, email: str) -> str:
        """The ``users.email_index`` value of ``email``."""
        return email_index(self.keyring.email_index_key, email)


@dataclass(frozen=True)
class Call:
    """One checked request, as a handler sees it.

    Attributes:
        services: the application's collaborators.
        body: the JSON object sent (empty for requests without a body).
        params: the URL path parameters, unchecked strings.
        user_id: the authenticated user, or None on public endpoints.
    """

    services: Services
    body: dict[str, object]
    params: dict[str, str]
    user_id: int | None

    @property
    def uid(self) -> int:
        """The authenticated user's id (only on endpoints that need a bearer token)."""
        assert self.user_id is not None
        return self.user_id


Handler = Callable[[Call], tuple[int, object]]


# --- sessions -----------------------------------------------------------------------------


def issue_session(services: Services, user_id: int, now: datetime | None = None) -> str:
    """A signed HS256 session token for ``user_id``."""
    now = now or datetime.now(UTC)
    claims = {"sub": str(user_id), "iat": now, "exp": now + JWT_LIFETIME}
    return jwt.encode(claims, services.keyring.jwt_secret, algorithm="HS256")


def session_user(services: Services, token: str) -> int:
    """The user id of a valid session token, else ApiError 401."""
    secrets_to_try = [services.keyring.jwt_secret]
    if (services.config.has_fault("jwt-rotation-keeps-sessions")
            and services.keyring.jwt_previous_secret is not None):
        secrets_to_try.append(services.keyring.jwt_previous_secret)
    for secret in secrets_to_try:
        try:
            claims = jwt.decode(token, secret, algorithms=["HS256"],
                                options={"require": ["exp", "sub"]})
        except jwt.InvalidTokenError:
            continue
        sub = claims.get("sub")
        if isinstance(sub, str) and sub.isascii() and sub.isdigit() and 0 < int(sub) < 2**63:
            return int(sub)
    raise ApiError(401, "invalid or expired session")


# --- request plumbing ---------------------------------------------------------------------


async def read_json_body(request: Request) -> dict[str, object]:
    """The request's JSON object, or ApiError (413 too big, 400 not a JSON object)."""
    declared = request.headers.get("content-length")
    if declared is not None and not (declared.isascii() and declared.isdigit()):
        raise ApiError(400, "bad content-length")
    if declared is not None and int(declared) > MAX_BODY_BYTES:
        raise ApiError(413, "request body too large")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ApiError(413, "request body too large")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise ApiError(400, "body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "body must be a JSON object")
    return body


def endpoint(handler: Handler, *, auth: bool) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a blocking handler: check input and session, run it in the thread pool."""

    async def run(request: Request) -> Response:
        services: Services = request.app.state.services
        body = await read_json_body(request) if request.method in ("POST", "PUT") else {}
        if services.config.has_fault("secrets-in-logs"):
            # The fault: the whole body, passwords and tokens included, goes to the log.
            log.info("request body", extra={"fields": {
                "path": request.url.path, "body": body,
                "authorization": request.headers.get("authorization")}})
        user_id = None
        if auth:
            header = request.headers.get("authorization", "")
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise ApiError(401, "bearer token required")
            user_id = session_user(services, token.strip())
        call = Call(services, body, dict(request.path_params), user_id)
        try:
            status, payload = await run_in_threadpool(_run_handler, handler, call)
        except ApiError:
            raise
        except (PoolTimeout, psycopg.OperationalError, psycopg.InterfaceError) as exc:
            log.error("database unavailable", extra={"fields": {"error": type(exc).__name__}})
            return JSONResponse({"error": "service temporarily unavailable"}, status_code=503)
        except Exception as exc:
            # Only the type and path: messages of library errors may quote data.
            log.error("unexpected error", extra={"fields": {
                "error": type(exc).__name__, "path": request.url.path}})
            return JSONResponse({"error": "internal error"}, status_code=500)
        return JSONResponse(payload, status_code=status)

    return run


def _run_handler(handler: Handler, call: Call) -> tuple[int, object]:
    """Run ``handler``; a deleted user's still-valid session is a 401, as for any bad session."""
    if call.user_id is not None:
        with call.services.pool.connection() as conn:
            if conn.execute("SELECT 1 FROM users WHERE id = %s", (call.user_id,)).fetchone() is None:
                raise ApiError(401, "invalid or expired session")
    return handler(call)


# --- accounts -----------------------------------------------------------------------------


def signup(call: Call) -> tuple[int, object]:
    """Create an account: e-mail encrypted + indexed, password bcrypt-hashed."""
    services = call.services
    email = email_field(call.body)
    password = password_field(call.body, new=True)
    password_hash = passwords.hash_secret(password, services.bcrypt_cost)
    columns = ["email_enc", "email_index", "password_hash"]
    values: list[object] = [services.cipher.encrypt(email), services.email_index(email),
                            password_hash]
    if services.config.has_fault("email-plaintext"):
        columns.append("contact_email")
        values.append(email)
    sql = (f"INSERT INTO users ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(values))}) "
           "ON CONFLICT (email_index) DO NOTHING RETURNING id")
    with services.pool.connection() as conn:
        row = conn.execute(sql, values).fetchone()
    if row is None:
        raise ApiError(409, "an account with this email exists")
    log.info("signup", extra={"fields": {"user_id": row[0]}})
    return 201, {"id": row[0]}


def _rate_limit_login(services: Services, index: str) -> None:
    """Count a login attempt for this account in Redis; 429 past the limit."""
    key = f"votriz:login:{index}"
    try:
        pipe = services.redis.pipeline()
        pipe.incr(key)
        pipe.expire(key, LOGIN_WINDOW_SECONDS, nx=True)
        attempts = pipe.execute()[0]
    except redis.RedisError:
        log.warning("rate limiter unavailable", extra={"fields": {"store": "redis"}})
        raise ApiError(503, "login temporarily unavailable") from None
    if attempts > LOGIN_ATTEMPTS_PER_WINDOW:
        raise ApiError(429, "too many login attempts, try again later")


@functools.cache
def _dummy_hash() -> str:
    """A real hash to check against when the account does not exist, so that the answer
    takes as long as for a wrong password (made on first use, not at worker start)."""
    return passwords.hash_secret(secrets.token_urlsafe(16), passwords.COST)


def login(call: Call) -> tuple[int, object]:
    """Check e-mail, password and (when enabled) a TOTP code; answer a session token."""
    services = call.services
    email = email_field(call.body)
    password = password_field(call.body, new=False)
    totp = text_field(call.body, "totp", max_len=10, required=False)
    index = services.email_index(email)
    _rate_limit_login(services, index)
    with services.pool.connection() as conn:
        row = conn.execute(
            "SELECT id, password_hash, mfa_enabled, totp_secret_enc FROM users "
            "WHERE email_index = %s", (index,)).fetchone()
    if row is None:
        passwords.secret_matches(password, _dummy_hash())
        raise ApiError(401, "wrong email or password")
    user_id, password_hash, mfa_enabled, totp_secret_enc = row
    if not passwords.secret_matches(password, password_hash):
        raise ApiError(401, "wrong email or password")
    if mfa_enabled:
        if totp is None:
            raise ApiError(401, "totp code required")
        secret = services.cipher.decrypt(totp_secret_enc)
        if not pyotp.TOTP(secret).verify(totp, valid_window=1):
            raise ApiError(401, "wrong totp code")
    log.info("login", extra={"fields": {"user_id": user_id}})
    return 200, {"token": issue_session(services, user_id)}


def delete_account(call: Call) -> tuple[int, object]:
    """Remove the user; foreign keys cascade to everything it owns."""
    with call.services.pool.connection() as conn:
        conn.execute("DELETE FROM users WHERE id = %s", (call.uid,))
    log.info("account deleted", extra={"fields": {"user_id": call.uid}})
    return 200, {"deleted": True}


# --- MFA ----------------------------------------------------------------------------------


def _new_backup_code() -> str:
    code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(10))
    return f"{code[:5]}-{code[5:]}"


def mfa_setup(call: Call) -> tuple[int, object]:
    """Enable TOTP; answer the secret and ten backup codes, this once only."""
    services = call.services
    totp_secret = pyotp.random_base32()
    codes = [_new_backup_code() for _ in range(BACKUP_CODE_COUNT)]
    hashes = list(_bcrypt_pool.map(lambda c: passwords.hash_secret(c, services.bcrypt_cost),
                                   codes))
    keep_plain = services.config.has_fault("backup-codes-shown-again")
    with services.pool.connection() as conn, conn.transaction():
        updated = conn.execute(
            "UPDATE users SET totp_secret_enc = %s, mfa_enabled = true "
            "WHERE id = %s AND NOT mfa_enabled RETURNING id",
            (services.cipher.encrypt(totp_secret), call.uid)).fetchone()
        if updated is None:
            raise ApiError(409, "mfa is already set up")
        with conn.cursor() as cur:
            if keep_plain:
                cur.executemany(
                    "INSERT INTO mfa_backup_codes (user_id, code_hash, code_plain) "
                    "VALUES (%s, %s, %s)",
                    [(call.uid, h, c) for h, c in zip(hashes, codes, strict=True)])
            else:
                cur.executemany(
                    "INSERT INTO mfa_backup_codes (user_id, code_hash) VALUES (%s, %s)",
                    [(call.uid, h) for h in hashes])
    log.info("mfa enabled", extra={"fields": {"user_id": call.uid}})
    return 201, {"totp_secret": totp_secret, "backup_codes": codes}


def mfa_status(call: Call) -> tuple[int, object]:
    """Whether MFA is on and how many backup codes are left; never the codes."""
    services = call.services
    with services.pool.connection() as conn:
        enabled = conn.execute("SELECT mfa_enabled FROM users WHERE id = %s",
                               (call.uid,)).fetchone()[0]
        remaining = conn.execute(
            "SELECT count(*) FROM mfa_backup_codes WHERE user_id = %s AND used_at IS NULL",
            (call.uid,)).fetchone()[0]
        answer: dict[str, object] = {"enabled": enabled, "backup_codes_remaining": remaining}
        if services.config.has_fault("backup-codes-shown-again"):
            rows = conn.execute(
                "SELECT code_plain FROM mfa_backup_codes WHERE user_id = %s AND used_at IS NULL "
                "ORDER BY id", (call.uid,)).fetchall()
            answer["backup_codes"] = [r[0] for r in rows]
    return 200, answer


def redeem_backup_code(call: Call) -> tuple[int, object]:
    """Accept a backup code once; a used or unknown code is a 401."""
    services = call.services
    code = required_text(call.body, "code", max_len=64).strip().lower()
    reusable = services.config.has_fault("backup-codes-reusable")
    with services.pool.connection() as conn:
        rows = conn.execute(
            "SELECT id, code_hash FROM mfa_backup_codes WHERE user_id = %s"
            + ("" if reusable else " AND used_at IS NULL"), (call.uid,)).fetchall()
    matches = list(_bcrypt_pool.map(lambda r: passwords.secret_matches(code, r[1]), rows))
    matched = [row[0] for row, ok in zip(rows, matches, strict=True) if ok]
    if not matched:
        raise ApiError(401, "invalid backup code")
    with services.pool.connection() as conn:
        # The condition on used_at makes two concurrent redeems of one code
        # succeed only once.
        done = conn.execute(
            "UPDATE mfa_backup_codes SET used_at = now() WHERE id = %s"
            + ("" if reusable else " AND used_at IS NULL") + " RETURNING id",
            (matched[0],)).fetchone()
        remaining = conn.execute(
            "SELECT count(*) FROM mfa_backup_codes WHERE user_id = %s AND used_at IS NULL",
            (call.uid,)).fetchone()[0]
    if done is None:
        raise ApiError(401, "invalid backup code")
    log.info("backup code redeemed", extra={"fields": {"user_id": call.uid}})
    return 200, {"redeemed": True, "backup_codes_remaining": remaining}


# --- recovery -----------------------------------------------------------------------------


def recovery_request(call: Call) -> tuple[int, object]:
    """Mail a one-time recovery link; always 202 so that accounts cannot be probed."""
    services = call.services
    email = email_field(call.body)
    with services.pool.connection() as conn:
        row = conn.execute("SELECT id FROM users WHERE email_index = %s",
                           (services.email_index(email),)).fetchone()
    if row is None:
        return 202, {"status": "accepted"}
    token = secrets.token_urlsafe(32)
    stored = (token if services.config.has_fault("recovery-token-plaintext")
              else passwords.hash_secret(token, services.bcrypt_cost))
    with services.pool.connection() as conn:
        conn.execute(
            "INSERT INTO recovery_tokens (user_id, token_hash, expires_at) "
            "VALUES (%s, %s, now() + %s)", (row[0], stored, RECOVERY_LIFETIME))
    link = f"{services.config.public_url}/recover?{urlencode({'email': email, 'token': token})}"
    try:
        response = services.http.post(
            f"{services.config.resend_base_url}/emails",
            headers={"Authorization": f"Bearer {services.keyring.provider_keys.get('resend', '')}"},
            json={"from": "Votriz <security@votriz.test>", "to": [email],
                  "subject": "Recover your Votriz account",
                  "text": f"Use this link within 15 minutes to recover your account:\n{link}\n"})
        response.raise_for_status()
    except httpx.HTTPError as exc:
        log.warning("recovery mail not sent", extra={"fields": {
            "user_id": row[0], "error": type(exc).__name__}})
    else:
        log.info("recovery mail sent", extra={"fields": {"user_id": row[0]}})
    return 202, {"status": "accepted"}


def recovery_confirm(call: Call) -> tuple[int, object]:
    """Exchange a recovery token for a session, once, within its lifetime."""
    services = call.services
    email = email_field(call.body)
    token = required_text(call.body, "token", max_len=128)
    reusable = services.config.has_fault("recovery-token-reusable")
    plaintext = services.config.has_fault("recovery-token-plaintext")
    with services.pool.connection() as conn:
        user = conn.execute("SELECT id FROM users WHERE email_index = %s",
                            (services.email_index(email),)).fetchone()
        rows = [] if user is None else conn.execute(
            "SELECT id, token_hash FROM recovery_tokens WHERE user_id = %s AND expires_at > now()"
            + ("" if reusable else " AND used_at IS NULL") + " ORDER BY id DESC LIMIT 5",
            (user[0],)).fetchall()
    matched = None
    for token_id, stored in rows:
        ok = (hmac.compare_digest(stored.encode(), token.encode()) if plaintext
              else passwords.secret_matches(token, stored))
        if ok:
            matched = token_id
            break
    if user is None or matched is None:
        raise ApiError(400, "invalid or expired recovery token")
    with services.pool.connection() as conn:
        done = conn.execute(
            "UPDATE recovery_tokens SET used_at = now() WHERE id = %s"
            + ("" if reusable else " AND used_at IS NULL") + " RETURNING id",
            (matched,)).fetchone()
    if done is None:
        raise ApiError(400, "invalid or expired recovery token")
    log.info("recovery used", extra={"fields": {"user_id": user[0]}})
    return 200, {"token": issue_session(services, user[0])}


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


# --- the application ----------------------------------------------------------------------


async def healthz(request: Request) -> Response:
    """Liveness of this worker (no dependency is checked: workers must answer fast)."""
    return JSONResponse({"status": "ok"})


async def api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return JSONResponse({"error": exc.message}, status_code=exc.status)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code)


def _routes() -> list[Route]:
    def r(path: str, handler: Handler, method: str, auth: bool = True) -> Route:
        return Route(f"/api/v1{path}", endpoint(handler, auth=auth), methods=[method])

    return [
        Route("/healthz", healthz, methods=["GET"]),
        r("/signup", signup, "POST", auth=False),
        r("/login", login, "POST", auth=False),
        r("/account", delete_account, "DELETE"),
        r("/mfa/setup", mfa_setup, "POST"),
        r("/mfa", mfa_status, "GET"),
        r("/mfa/backup-codes/redeem", redeem_backup_code, "POST"),
        r("/recovery/request", recovery_request, "POST", auth=False),
        r("/recovery/confirm", recovery_confirm, "POST", auth=False),
        r("/brands", create_brand, "POST"),
        r("/brands", list_brands, "GET"),
        r("/brands/{brand_id}/channels", create_channel, "POST"),
        r("/brands/{brand_id}/channels", list_channels, "GET"),
        r("/channels/{channel_id}/tokens", update_channel_tokens, "PUT"),
        r("/channels/{channel_id}/sync", sync_channel, "POST"),
        r("/brands/{brand_id}/captions", create_caption, "POST"),
        r("/brands/{brand_id}/analytics", brand_analytics, "GET"),
    ]


async def _log_requests(request: Request, call_next: Callable[[Request], Awaitable[Response]]
                        ) -> Response:
    """One access line per request: method, path, status, milliseconds. No body, no query."""
    started = time.perf_counter()
    response = await call_next(request)
    log.info("request", extra={"fields": {
        "method": request.method, "path": request.url.path, "status": response.status_code,
        "ms": round((time.perf_counter() - started) * 1000, 1)}})
    return response


def build_services(config: ApiConfig, keyring: KeyRing | None = None) -> Services:
    """Read the keys (unless given) and open the clients one worker needs."""
    keyring = keyring if keyring is not None else load_keyring(config)
    tls = ssl.create_default_context(cafile=config.upstream_ca_file)
    return Services(
        config=config,
        keyring=keyring,
        pool=ConnectionPool(config.database_dsn, keyring.db_password),
        redis=redis.Redis(host=config.redis_host, port=config.redis_port,
                          password=keyring.redis_password, socket_timeout=3,
                          socket_connect_timeout=3),
        http=httpx.Client(verify=tls, timeout=10.0),
    )


def create_app(config: ApiConfig, services: Services | None = None) -> Starlette:
    """The ASGI application. Without ``services``, keys come from the HSM right now."""
    configure_logging()
    services = services if services is not None else build_services(config)
    if FAULT_COLUMNS.keys() & config.faults:
        # Plaintext columns of the faults that are on, in case migrate ran without them.
        with services.pool.connection() as conn:
            apply_fault_columns(conn, config.faults)
    app = Starlette(
        routes=_routes(),
        middleware=[Middleware(BaseHTTPMiddleware, dispatch=_log_requests)],
        exception_handlers={ApiError: api_error, HTTPException: http_error},
    )
    app.state.services = services
    log.info("api started", extra={"fields": {
        "token_key_versions": sorted(services.keyring.token_keys),
        "token_key_primary": services.keyring.primary_token_version,
        "token_key_decrypt_only": sorted(services.keyring.token_decrypt_only),
        "faults": sorted(config.faults)}})
    return app
