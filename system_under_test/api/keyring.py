"""The key ring: every secret the API needs, read from the HSM once at process start.

A process reads the PIN from the file named by ``VOTRIZ_HSM_PIN_FILE``, logs in
to the token, reads the keys by label, logs out and closes the session. The
PIN is never put into the environment and is dropped as soon as the session
is closed. The operator commands use the same functions to add, replace and
retire keys.

Token-encryption keys are staged for rotation in the HSM itself: a key object
whose ``CKA_ENCRYPT`` is False is *decrypt-only* (every process can read rows
under it, none writes under it); the primary, encrypting key is the highest
version whose ``CKA_ENCRYPT`` is True. ``rotate-token-key`` creates the new
version decrypt-only, rolls the workers, then sets ``CKA_ENCRYPT`` to True.
"""

from __future__ import annotations

import base64
import os
import re
import time
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


class SharedLabelError(KeyringError):
    """Two objects on the token share a label: a :func:`put_secret` is replacing one (for a
    moment both are there), or the token is wrong if it lasts."""


class HsmUnavailable(KeyringError):
    """The token answered an error that may pass: CKR_GENERAL_ERROR or a device error, seen
    from SoftHSM behind p11-kit while other processes open sessions at the same moment."""


#: PKCS#11 errors about who asks (a wrong, locked or unset PIN) or what is asked for: never
#: tried again, since a real HSM locks the PIN after a few wrong attempts.
NOT_TRANSIENT: tuple[type[pkcs11.PKCS11Error], ...] = (
    pkcs11.PinIncorrect, pkcs11.PinInvalid, pkcs11.PinLenRange, pkcs11.PinLocked, pkcs11.PinExpired,
    pkcs11.UserPinNotInitialized, pkcs11.NoSuchToken, pkcs11.MultipleTokensReturned)


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


# SoftHSM2 keeps tokens as files; a process that scans them while another process
# rewrites one (a key rotation) can miss the token for a moment. A worker that fails
# to boot halts gunicorn, so a missing token is retried briefly before it is an error.
TOKEN_LOOKUP_ATTEMPTS = 10
TOKEN_LOOKUP_PAUSE_S = 0.2


def find_token(library: pkcs11.lib, label: str, *, attempts: int = TOKEN_LOOKUP_ATTEMPTS,
               pause_s: float = TOKEN_LOOKUP_PAUSE_S) -> pkcs11.Token:
    """The token labelled ``label``; NoSuchToken only if it stays missing over ``attempts`` looks."""
    for attempt in range(attempts):
        try:
            return library.get_token(token_label=label)
        except pkcs11.NoSuchToken:
            if attempt == attempts - 1:
                raise
            time.sleep(pause_s)
            # Re-initialising makes the module scan its token files again.
            library.reinitialize()
    raise AssertionError("unreachable")


@contextmanager
def hsm_session(config: ApiConfig, pin: str, *, rw: bool = False) -> Iterator[pkcs11.Session]:
    """Open a logged-in session on the configured token; log out and close on exit."""
    try:
        token = find_token(pkcs11.lib(config.hsm_module), config.hsm_token_label)
        session = token.open(user_pin=pin, rw=rw)
    except NOT_TRANSIENT as exc:
        raise KeyringError(f"cannot open HSM token {config.hsm_token_label!r}: {exc!r}") from None
    except pkcs11.PKCS11Error as exc:
        raise HsmUnavailable(f"cannot open HSM token {config.hsm_token_label!r}: {exc!r}") from None
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
            raise SharedLabelError(f"two HSM objects are labelled {label!r}")
        values[label] = bytes(obj[Attribute.VALUE])
    return values


def _encrypt_allowed(obj: pkcs11.Object) -> bool:
    """The object's ``CKA_ENCRYPT``; an HSM that does not keep the attribute means True."""
    try:
        return bool(obj[Attribute.ENCRYPT])
    except (pkcs11.AttributeTypeInvalid, pkcs11.AttributeSensitive):
        return True


def read_decrypt_only(session: pkcs11.Session) -> frozenset[str]:
    """Labels of the token-encryption key objects marked decrypt-only (``CKA_ENCRYPT`` False)."""
    labels: set[str] = set()
    for obj in session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY}):
        label = obj[Attribute.LABEL]
        if _TOKEN_KEY_RE.match(label) and not _encrypt_allowed(obj):
            labels.add(label)
    return frozenset(labels)


def set_encrypt_allowed(session: pkcs11.Session, label: str, allowed: bool) -> int:
    """Set ``CKA_ENCRYPT`` on every secret object labelled ``label`` (promote or stage a key).

    Returns how many objects were changed; the value is read back, so an HSM
    that silently ignores the change is an error.
    """
    objects = list(session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY,
                                        Attribute.LABEL: label}))
    for obj in objects:
        obj[Attribute.ENCRYPT] = allowed
        if _encrypt_allowed(obj) != allowed:
            raise KeyringError(f"the HSM did not keep CKA_ENCRYPT={allowed} on {label!r}")
    return len(objects)


def secret_template(label: str, value: bytes) -> dict[Attribute, object]:
    """The attributes of a secret the application reads: a private token object of a generic
    secret key, ``CKA_SENSITIVE`` False and ``CKA_EXTRACTABLE`` True."""
    return {
        Attribute.CLASS: ObjectClass.SECRET_KEY,
        Attribute.KEY_TYPE: KeyType.GENERIC_SECRET,
        Attribute.TOKEN: True,
        Attribute.PRIVATE: True,
        # The application reads the values at process start (CONTRACT.md), so they have
        # to be readable; the harness reports this trade-off.
        Attribute.SENSITIVE: False,
        Attribute.EXTRACTABLE: True,
        Attribute.LABEL: label,
        Attribute.VALUE: value,
    }


def put_secret(session: pkcs11.Session, label: str, value: bytes, key_id: bytes = b"",
               *, decrypt_only: bool = False) -> None:
    """Create a secret object, replacing any object that has the same label.

    The new object is created before the old one is destroyed, so a process
    that starts in between still finds one (possibly the old) value.
    ``decrypt_only`` creates it with ``CKA_ENCRYPT`` False (a staged token key).
    """
    old = list(session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY,
                                    Attribute.LABEL: label}))
    template = secret_template(label, value)
    if key_id:
        template[Attribute.ID] = key_id
    if decrypt_only:
        template[Attribute.ENCRYPT] = False
        template[Attribute.DECRYPT] = True
    created = session.create_object(template)
    if decrypt_only and _encrypt_allowed(created):
        created.destroy()
        raise KeyringError(f"the HSM did not keep CKA_ENCRYPT=False on {label!r}")
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
        token_keys: raw token-encryption keys by version.
        jwt_secret: HS256 secret for session tokens.
        email_index_key: HMAC-SHA256 key of ``users.email_index`` (never rotated:
            it only makes lookups possible and is independent of the JWT secret,
            so JWT rotation keeps logins working).
        provider_keys: provider API keys by provider name (anthropic, fal, resend, stripe).
        db_password: password of the role ``votriz_app``.
        redis_password: Redis password.
        jwt_previous_secret: the secret before the last rotation; present only
            when the token still holds it (the ``jwt-rotation-keeps-sessions`` fault).
        token_decrypt_only: versions staged decrypt-only in the HSM (``CKA_ENCRYPT``
            False): they decrypt, they never encrypt. The primary, encrypting key is
            the highest version not in this set.
    """

    token_keys: dict[int, bytes]
    jwt_secret: bytes
    email_index_key: bytes
    provider_keys: dict[str, str]
    db_password: str
    redis_password: str
    jwt_previous_secret: bytes | None = field(default=None)
    token_decrypt_only: frozenset[int] = field(default=frozenset())

    def __repr__(self) -> str:
        return f"KeyRing(token_key_versions={sorted(self.token_keys)})"

    @property
    def primary_token_version(self) -> int:
        """The highest version that may encrypt (not staged decrypt-only)."""
        usable = [v for v in self.token_keys if v not in self.token_decrypt_only]
        if not usable:
            raise KeyringError("every token-encryption key in the HSM is decrypt-only")
        return max(usable)

    @property
    def token_fernet(self) -> MultiFernet:
        """A MultiFernet whose first (encrypting) key is the primary version, then every
        other version (decrypt-only ones included), highest first."""
        primary = self.primary_token_version
        ordered = [primary, *sorted((v for v in self.token_keys if v != primary), reverse=True)]
        return MultiFernet([Fernet(fernet_key(self.token_keys[v])) for v in ordered])

    @property
    def primary_token_fernet(self) -> Fernet:
        """The Fernet of the primary version, the one that encrypts."""
        return Fernet(fernet_key(self.token_keys[self.primary_token_version]))


def keyring_from_secrets(values: dict[str, bytes], config: ApiConfig,
                         decrypt_only: frozenset[str] = frozenset()) -> KeyRing:
    """Pick the API's keys out of the token's label → value map.

    ``decrypt_only`` holds the labels of staged token keys (``read_decrypt_only``).
    """

    def need(label: str) -> bytes:
        if label not in values:
            raise KeyringError(f"HSM object {label!r} is missing")
        return values[label]

    versions = token_key_versions(values)
    if not versions:
        raise KeyringError(f"no {TOKEN_KEY_PREFIX}N object in the HSM")
    staged = frozenset(v for v, label in versions.items() if label in decrypt_only)
    if staged == set(versions):
        raise KeyringError("every token-encryption key in the HSM is decrypt-only")
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
        token_decrypt_only=staged,
    )


#: How often, and how far apart (times 1, 2 … 5), a process reads the token again when the
#: read may succeed later: a label found twice (:func:`put_secret` creates the new object
#: before it destroys the old one), or an error of the moment (:class:`HsmUnavailable`).
#: At most ~9 s in all, within gunicorn's 30 s for a worker to start.
READ_ATTEMPTS = 20
READ_PAUSE_S = 0.1


def load_keyring(config: ApiConfig, pin_file: str | Path | None = None, *,
                 attempts: int = READ_ATTEMPTS, pause_s: float = READ_PAUSE_S) -> KeyRing:
    """Read the whole key ring at process start: PIN file, log in, read, log out, close.

    A read that may succeed later (a rotation replacing a secret at this moment, an HSM
    that answers CKR_GENERAL_ERROR while other processes open sessions) is made again, in
    a new session, up to ``attempts`` times: a gunicorn worker that fails to start stops
    every worker with it (seen: the reference's API container ended at stand-up on one
    such error). A wrong or locked PIN is never tried again.
    """
    pin = read_pin(pin_file)
    for attempt in range(max(1, attempts)):
        try:
            with hsm_session(config, pin) as session:
                values = read_secrets(session)
                decrypt_only = read_decrypt_only(session)
            break
        except NOT_TRANSIENT:
            raise
        except (SharedLabelError, HsmUnavailable, pkcs11.PKCS11Error) as exc:
            if attempt >= attempts - 1:
                if isinstance(exc, KeyringError):
                    raise
                raise HsmUnavailable(f"cannot read HSM token {config.hsm_token_label!r}: {exc!r}") from None
            time.sleep(pause_s * min(attempt + 1, 5))
    del pin
    return keyring_from_secrets(values, config, decrypt_only)
