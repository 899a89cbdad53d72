"""The key ring: every secret the API needs, read from the HSM once at process start.

A process reads the PIN from the file named by ``VOTRIZ_HSM_PIN_FILE``, logs in
to the token, reads the keys by label, logs out and closes the session. The
PIN is never put into the environment and is dropped as soon as the session
is closed. The operator commands use the same functions to add, replace and
retire keys.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pkcs11
from cryptography.fernet import Fernet, MultiFernet
from pkcs11 import Attribute, KeyType, ObjectClass

from system_under_test.api.config import ApiConfig

PIN_FILE_ENV = "VOTRIZ_HSM_PIN_FILE"

TOKEN_KEY_PREFIX = "votriz/token-encryption/v"
JWT_LABEL = "votriz/jwt-signing"
# Kept only by ``rotate-jwt-secret`` under the ``jwt-rotation-keeps-sessions``
# fault: a clean rotation destroys the old secret.
JWT_PREVIOUS_LABEL = "votriz/jwt-signing/previous"
EMAIL_INDEX_LABEL = "votriz/index/email-hmac"
DB_PASSWORD_LABEL = "votriz/db/password"
REDIS_PASSWORD_LABEL = "votriz/redis/password"
BACKUP_KEY_LABEL = "votriz/backup/key"
PROVIDER_LABELS = {
    "anthropic": "votriz/api/anthropic",
    "fal": "votriz/api/fal",
    "resend": "votriz/api/resend",
    "stripe": "votriz/api/stripe",
}

_TOKEN_KEY_RE = re.compile(r"^votriz/token-encryption/v([1-9][0-9]*)$")


class KeyringError(RuntimeError):
    """The HSM could not be opened or lacks a key the process needs."""


def read_pin(path: str | Path | None = None) -> str:
    """Read the HSM user PIN from the file named by ``path`` or ``VOTRIZ_HSM_PIN_FILE``."""
    pin_path = path if path is not None else os.environ.get(PIN_FILE_ENV)
    if not pin_path:
        raise KeyringError(f"{PIN_FILE_ENV} is not set")
    try:
        pin = Path(pin_path).read_text(encoding="ascii").strip()
    except OSError as exc:
        raise KeyringError(f"cannot read the HSM PIN file: {exc.strerror}") from None
    if not pin:
        raise KeyringError("the HSM PIN file is empty")
    return pin


@contextmanager
def hsm_session(config: ApiConfig, pin: str, *, rw: bool = False) -> Iterator[pkcs11.Session]:
    """Open a logged-in session on the configured token; log out and close on exit."""
    try:
        token = pkcs11.lib(config.hsm_module).get_token(token_label=config.hsm_token_label)
        session = token.open(user_pin=pin, rw=rw)
    except pkcs11.PKCS11Error as exc:
        raise KeyringError(f"cannot open HSM token {config.hsm_token_label!r}: {exc!r}") from None
    try:
        yield session
    finally:
        # Session.close logs out (it was opened with a user PIN) and closes.
        session.close()


def read_secrets(session: pkcs11.Session) -> dict[str, bytes]:
    """Read the value of every secret key object on the token, by label.

    Raises:
        KeyringError: when two objects share a label, since then which one
            a process uses would be a matter of chance.
    """
    values: dict[str, bytes] = {}
    for obj in session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY}):
        label = obj[Attribute.LABEL]
        if label in values:
            raise KeyringError(f"two HSM objects are labelled {label!r}")
        values[label] = bytes(obj[Attribute.VALUE])
    return values


def put_secret(session: pkcs11.Session, label: str, value: bytes, key_id: bytes = b"") -> None:
    """Create a secret object, replacing any object that has the same label.

    The new object is created before the old one is destroyed, so a process
    that starts in between still finds one (possibly the old) value.
    """
    old = list(session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY,
                                    Attribute.LABEL: label}))
    template = {
        Attribute.CLASS: ObjectClass.SECRET_KEY,
        Attribute.KEY_TYPE: KeyType.GENERIC_SECRET,
        Attribute.TOKEN: True,
        Attribute.PRIVATE: True,
        # The application reads values at start, so they must be extractable.
        Attribute.SENSITIVE: False,
        Attribute.EXTRACTABLE: True,
        Attribute.LABEL: label,
        Attribute.VALUE: value,
    }
    if key_id:
        template[Attribute.ID] = key_id
    session.create_object(template)
    for obj in old:
        obj.destroy()


def destroy_secret(session: pkcs11.Session, label: str) -> int:
    """Destroy every secret object labelled ``label``; return how many there were."""
    objects = list(session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY,
                                        Attribute.LABEL: label}))
    for obj in objects:
        obj.destroy()
    return len(objects)


def token_key_versions(labels: object) -> dict[int, str]:
    """Map version number to label for every ``votriz/token-encryption/vN`` label."""
    versions: dict[int, str] = {}
    for label in labels:  # type: ignore[attr-defined]
        match = _TOKEN_KEY_RE.match(label)
        if match:
            versions[int(match.group(1))] = label
    return versions


def fernet_key(raw: bytes) -> bytes:
    """Turn 32 raw key bytes from the HSM into a Fernet key."""
    if len(raw) != 32:
        raise KeyringError("a Fernet key object must hold 32 bytes")
    return base64.urlsafe_b64encode(raw)


@dataclass(frozen=True, repr=False)
class KeyRing:
    """The secrets one API process holds in memory after start.

    ``repr`` is disabled so that a stray log line or traceback cannot print keys.

    Attributes:
        token_keys: raw token-encryption keys by version; the highest is primary.
        jwt_secret: HS256 secret for session tokens.
        email_index_key: HMAC-SHA256 key of ``users.email_index`` (never rotated:
            it only makes lookups possible and is independent of the JWT secret,
            so JWT rotation keeps logins working).
        provider_keys: provider API keys by provider name (anthropic, fal, resend, stripe).
        db_password: password of the role ``votriz_app``.
        redis_password: Redis password.
        jwt_previous_secret: the secret before the last rotation; present only
            when the token still holds it (the ``jwt-rotation-keeps-sessions`` fault).
    """

    token_keys: dict[int, bytes]
    jwt_secret: bytes
    email_index_key: bytes
    provider_keys: dict[str, str]
    db_password: str
    redis_password: str
    jwt_previous_secret: bytes | None = field(default=None)

    def __repr__(self) -> str:
        return f"KeyRing(token_key_versions={sorted(self.token_keys)})"

    @property
    def token_fernet(self) -> MultiFernet:
        """A MultiFernet whose first (encrypting) key is the highest version."""
        ordered = sorted(self.token_keys, reverse=True)
        return MultiFernet([Fernet(fernet_key(self.token_keys[v])) for v in ordered])

    @property
    def primary_token_fernet(self) -> Fernet:
        """The Fernet of the highest key version, the one that encrypts."""
        return Fernet(fernet_key(self.token_keys[max(self.token_keys)]))


def keyring_from_secrets(values: dict[str, bytes], config: ApiConfig) -> KeyRing:
    """Pick the API's keys out of the token's label → value map."""

    def need(label: str) -> bytes:
        if label not in values:
            raise KeyringError(f"HSM object {label!r} is missing")
        return values[label]

    versions = token_key_versions(values)
    if not versions:
        raise KeyringError(f"no {TOKEN_KEY_PREFIX}N object in the HSM")
    if REDIS_PASSWORD_LABEL in values:
        redis_password = values[REDIS_PASSWORD_LABEL].decode("ascii")
    elif config.redis_password_file:
        # The key-not-in-hsm fault: the stack leaves the password in a file.
        redis_password = Path(config.redis_password_file).read_text(encoding="ascii").strip()
    else:
        raise KeyringError(f"HSM object {REDIS_PASSWORD_LABEL!r} is missing")
    return KeyRing(
        token_keys={v: values[label] for v, label in versions.items()},
        jwt_secret=need(JWT_LABEL),
        email_index_key=need(EMAIL_INDEX_LABEL),
        provider_keys={name: values[label].decode("ascii")
                       for name, label in PROVIDER_LABELS.items() if label in values},
        db_password=need(DB_PASSWORD_LABEL).decode("ascii"),
        redis_password=redis_password,
        jwt_previous_secret=values.get(JWT_PREVIOUS_LABEL),
    )


def load_keyring(config: ApiConfig, pin_file: str | Path | None = None) -> KeyRing:
    """Read the whole key ring at process start: PIN file, log in, read, log out, close."""
    pin = read_pin(pin_file)
    with hsm_session(config, pin) as session:
        values = read_secrets(session)
    del pin
    return keyring_from_secrets(values, config)
