"""Violations of "no sensitive data in plaintext": secrets the audit did not plant, put by hand
where the service keeps data (a row that is not the canary's, a Redis value, the API's log).

Each value has the published shape of a real credential and is random, so no
check can know it in advance: only a search of everything stored, by shape,
finds it.
"""

from __future__ import annotations

import base64
import json
import secrets
import time

from system_under_test.violations import Violation
from system_under_test.violations.stack import RunningStack, StackError

#: The Redis key the JWT violation writes (a cache entry, as a careless service would keep one).
REDIS_KEY = "votriz:cache:session-of-user-1"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _changed(rows: list[tuple[object, ...]], what: str) -> None:
    if not rows:
        raise StackError(f"no {what} row to change: the stack holds none")


def google_token_in_external_account(stack: RunningStack) -> None:
    """The oldest channel's ``external_account`` (plaintext by the inventory: a public handle)
    holds a YouTube/Google OAuth access token instead."""
    token = "ya29.a0" + secrets.token_urlsafe(96)
    _changed(stack.sql("UPDATE channels SET external_account = %s "
                       "WHERE id = (SELECT min(id) FROM channels) RETURNING id", (token,)), "channel")


def anthropic_key_in_caption(stack: RunningStack) -> None:
    """The oldest caption's ``caption_enc`` (Fernet by the inventory) holds an Anthropic API key
    in plaintext."""
    key = "sk-ant-api03-" + secrets.token_urlsafe(70) + "AA"
    _changed(stack.sql("UPDATE captions SET caption_enc = %s "
                       "WHERE id = (SELECT min(id) FROM captions) RETURNING id", (key,)), "caption")


def session_jwt_in_redis(stack: RunningStack) -> None:
    """A session JWT stored as a Redis value (no expiry)."""
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = _b64url(json.dumps({"sub": "1", "iat": int(time.time())}).encode())
    token = f"{header}.{claims}.{_b64url(secrets.token_bytes(32))}"
    client = stack.redis()
    try:
        if not client.set(REDIS_KEY, token):
            raise StackError(f"Redis did not store {REDIS_KEY}")
    finally:
        client.close()


def bearer_header_in_api_log(stack: RunningStack) -> None:
    """A request's ``Authorization: Bearer`` header written to the API's log."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    line = json.dumps({"time": stamp, "level": "info", "logger": "votriz.api",
                       "message": "upstream call", "method": "POST",
                       "headers": {"Authorization": "Bearer " + secrets.token_urlsafe(32)}})
    stack.append_api_log(line)


VIOLATIONS = (
    Violation("row-oauth-token-in-handle", "one existing channel's external_account (a public "
              "handle) is overwritten by SQL with a plaintext Google OAuth access token",
              google_token_in_external_account),
    Violation("row-api-key-in-caption", "one existing caption's caption_enc is overwritten by SQL "
              "with a plaintext Anthropic API key", anthropic_key_in_caption),
    Violation("redis-session-jwt", "a session JWT is stored as a Redis value under "
              f"{REDIS_KEY}", session_jwt_in_redis),
    Violation("log-bearer-header", "an Authorization: Bearer header line is appended to the API's "
              "log", bearer_header_in_api_log),
)
