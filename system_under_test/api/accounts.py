"""The account endpoints: sign-up, login (rate-limited, TOTP when enrolled), deletion, MFA
enrolment and backup codes, and account recovery by e-mailed token."""

from __future__ import annotations

import functools
import hmac
import secrets
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from urllib.parse import urlencode

import httpx
import pyotp
import redis

from system_under_test.api import passwords
from system_under_test.api.calls import Call, Services, issue_session, log
from system_under_test.api.validation import (
    ApiError,
    email_field,
    password_field,
    required_text,
    text_field,
)

RECOVERY_LIFETIME = timedelta(minutes=15)
BACKUP_CODE_COUNT = 10
LOGIN_ATTEMPTS_PER_WINDOW = 10
LOGIN_WINDOW_SECONDS = 300
# An alphabet without look-alike characters for codes a person types.
CODE_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"

# bcrypt releases the GIL, so hashing ten backup codes on a few threads is
# faster than one after another.
_bcrypt_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="bcrypt")


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
