"""What every endpoint of the API shares: its services, the checked call, sessions, the wrapper.

Handlers are plain functions run in Starlette's thread pool, because bcrypt,
psycopg and the outbound calls all block. :func:`endpoint` reads and checks
the request (size, JSON, bearer token) first, so every bad input becomes a
4xx ``{"error": ...}`` before any handler runs.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import jwt
import psycopg
import redis
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from system_under_test.api import passwords
from system_under_test.api.config import ApiConfig
from system_under_test.api.db import (
    ConnectionPool,
    PoolTimeout,
)
from system_under_test.api.fieldcrypto import FieldCipher, email_index
from system_under_test.api.keyring import KeyRing
from system_under_test.api.validation import ApiError

MAX_BODY_BYTES = 64 * 1024
JWT_LIFETIME = timedelta(hours=1)

log = logging.getLogger("votriz.api")


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
        self.cipher = FieldCipher(self.keyring, fixed_iv=self.config.has_fault("token-fixed-iv"),
                                  other_library=self.config.has_fault("fernet-other-library"))

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
