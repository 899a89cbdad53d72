"""The HSM probe: list a PKCS#11 token's objects and read key values for the auditor.

The probe opens the profile's PKCS#11 module, finds the token by label, logs in
with the PIN (a session that is not logged in sees no private objects), and
returns frozen observations: one :class:`HsmObject` per object with the
attributes an auditor judges custody by, and, on request, the values of keys
the harness needs to prove which keys are in use. Every value read is
registered in :class:`~harness.redaction.KnownSecrets` before it is returned,
so it can never reach a report unredacted.

One library per process. python-pkcs11 caches a loaded module per path
(``pkcs11.lib``), and SoftHSM reads ``SOFTHSM2_CONF`` only in ``C_Initialize``.
Measured with python-pkcs11 0.10.1 and SoftHSM 2.6.1: ``C_Finalize`` followed by
``C_Initialize`` on the cached library re-reads the configuration from the
environment, so one process can look at tokens of different configurations in
turn. The probe therefore serialises every use of a module behind one lock,
applies ``hsm.env`` to ``os.environ`` and re-initialises the library at each
opening. Re-initialising also gives a fresh view of the token after another
process (a rotation) has added or removed keys. Nothing else in the process may
hold a session on the same module while a probe runs: re-initialising closes it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pkcs11
from pkcs11 import Attribute, ObjectClass
from pkcs11 import exceptions as p11errors

from harness.outcomes import ProbeError
from harness.profile import Hsm, ProfileError
from harness.redaction import KnownSecrets, fingerprint

_LOCK = threading.RLock()

_FLAG_ATTRIBUTES: tuple[tuple[str, Attribute], ...] = (
    ("token", Attribute.TOKEN),
    ("private", Attribute.PRIVATE),
    ("sensitive", Attribute.SENSITIVE),
    ("extractable", Attribute.EXTRACTABLE),
    ("always_sensitive", Attribute.ALWAYS_SENSITIVE),
    ("never_extractable", Attribute.NEVER_EXTRACTABLE),
    ("local", Attribute.LOCAL),
)


@dataclass(frozen=True)
class HsmObject:
    """One object on the token, as an auditor sees it (never its value).

    Attributes:
        object_class: ``CKA_CLASS`` name (``SECRET_KEY``, ``PRIVATE_KEY``, ``DATA`` ...).
        key_type: ``CKA_KEY_TYPE`` name (``GENERIC_SECRET``, ``AES`` ...); None for non-keys.
        label: ``CKA_LABEL``.
        id_hex: ``CKA_ID`` as hex ('' when absent).
        id_text: ``CKA_ID`` as text when it is printable ASCII, else ''.
        token, private, sensitive, extractable, always_sensitive, never_extractable, local:
            the boolean attributes; None when the object has no such attribute.
        value_len: length of the value in bytes (``CKA_VALUE_LEN``, or the value's
            length when it is readable); None when unknown.
    """

    object_class: str
    key_type: str | None
    label: str
    id_hex: str
    id_text: str
    token: bool | None
    private: bool | None
    sensitive: bool | None
    extractable: bool | None
    always_sensitive: bool | None
    never_extractable: bool | None
    local: bool | None
    value_len: int | None

    @property
    def can_leave_token(self) -> bool:
        """Whether the value can leave the token, read directly or wrapped."""
        return self.sensitive is False or self.extractable is True

    def as_evidence(self) -> dict[str, Any]:
        """A JSON-able view (labels and attributes only)."""
        return {
            "label": self.label, "class": self.object_class, "key_type": self.key_type,
            "id": self.id_text or self.id_hex, "token": self.token, "private": self.private,
            "sensitive": self.sensitive, "extractable": self.extractable,
            "always_sensitive": self.always_sensitive,
            "never_extractable": self.never_extractable, "local": self.local,
            "value_len": self.value_len,
        }


@dataclass(frozen=True)
class TokenListing:
    """Everything on one token, seen by a logged-in user session.

    Attributes:
        module: path of the PKCS#11 module.
        library: the module's manufacturer and description.
        token_label: label of the token.
        token_serial: its serial number.
        objects: every object, sorted by label.
    """

    module: str
    library: str
    token_label: str
    token_serial: str
    objects: tuple[HsmObject, ...]

    def labels(self) -> tuple[str, ...]:
        return tuple(obj.label for obj in self.objects)

    def by_label(self, label: str) -> tuple[HsmObject, ...]:
        return tuple(obj for obj in self.objects if obj.label == label)


@dataclass(frozen=True)
class KeyValues:
    """Key values read from the token, for the harness's own use only.

    The values never appear in ``repr`` or in evidence; :meth:`fingerprints`
    is the safe way to name them. Each was registered in KnownSecrets when read.

    Attributes:
        unreadable: labels asked for whose value could not be read, with the reason.
    """

    _values: Mapping[str, bytes] = field(repr=False)
    unreadable: Mapping[str, str] = field(default_factory=dict)

    def __contains__(self, label: object) -> bool:
        return label in self._values

    def get(self, label: str) -> bytes | None:
        return self._values.get(label)

    def require(self, label: str) -> bytes:
        """The value under ``label``; ProbeError naming the label when it is missing."""
        value = self._values.get(label)
        if value is None:
            reason = self.unreadable.get(label, "no object with this label")
            raise ProbeError(f"HSM: cannot read the value of {label!r}: {reason}")
        return value

    def labels(self) -> tuple[str, ...]:
        return tuple(sorted(self._values))

    def items(self) -> list[tuple[str, bytes]]:
        return sorted(self._values.items())

    def fingerprints(self) -> dict[str, str]:
        """Label -> non-reversible fingerprint, safe for evidence."""
        return {label: fingerprint(value) for label, value in sorted(self._values.items())}


@dataclass(frozen=True)
class HsmSnapshot:
    """A listing and the values read in the same session.

    Attributes:
        listing: the token's objects.
        values: the values read (see :class:`KeyValues`).
    """

    listing: TokenListing
    values: KeyValues


def _enum_name(value: Any) -> str:
    name = getattr(value, "name", None)
    return str(name) if name is not None else str(value)


def _attribute(obj: Any, attribute: Attribute) -> Any:
    """An attribute's value, or None when the object has no such attribute or hides it."""
    try:
        return obj[attribute]
    except (p11errors.AttributeTypeInvalid, p11errors.AttributeSensitive, KeyError,
            NotImplementedError, p11errors.PKCS11Error):
        return None


def _describe(obj: Any) -> HsmObject:
    raw_id = _attribute(obj, Attribute.ID) or b""
    raw_id = bytes(raw_id)
    id_text = raw_id.decode("ascii") if raw_id and all(32 <= b < 127 for b in raw_id) else ""
    flags = {name: _attribute(obj, attr) for name, attr in _FLAG_ATTRIBUTES}
    value_len = _attribute(obj, Attribute.VALUE_LEN)
    if value_len is None and flags["sensitive"] is False:
        value = _attribute(obj, Attribute.VALUE)
        value_len = len(value) if value is not None else None
    key_type = _attribute(obj, Attribute.KEY_TYPE)
    return HsmObject(
        object_class=_enum_name(_attribute(obj, Attribute.CLASS)),
        key_type=_enum_name(key_type) if key_type is not None else None,
        label=str(_attribute(obj, Attribute.LABEL) or ""),
        id_hex=raw_id.hex(),
        id_text=id_text,
        value_len=int(value_len) if value_len is not None else None,
        **{name: (bool(value) if value is not None else None) for name, value in flags.items()},
    )


def _load_library(hsm: Hsm) -> Any:
    """The module, loaded once per path and re-initialised with the profile's environment."""
    os.environ.update(hsm.env)
    module = str(hsm.module)
    if not Path(module).is_file():
        raise ProbeError(f"HSM: PKCS#11 module {module} does not exist")
    try:
        library = pkcs11.lib(module)
        # C_Finalize + C_Initialize: the module re-reads its configuration
        # (SOFTHSM2_CONF) and forgets its cached view of the token files.
        library.reinitialize()
    except p11errors.PKCS11Error as exc:
        raise ProbeError(f"HSM: cannot load PKCS#11 module {module}: "
                         f"{type(exc).__name__} {exc}".rstrip()) from None
    return library


# SoftHSM2 keeps tokens as files; a scan while another process rewrites one (a key
# rotation in the audited service) can miss the token for a moment. The lookup is
# retried briefly; a token that stays missing is still reported.
TOKEN_LOOKUP_ATTEMPTS = 10
TOKEN_LOOKUP_PAUSE_S = 0.2


def _find_token(library: Any, label: str) -> Any:
    for attempt in range(TOKEN_LOOKUP_ATTEMPTS):
        try:
            return library.get_token(token_label=label)
        except p11errors.NoSuchToken:
            if attempt == TOKEN_LOOKUP_ATTEMPTS - 1:
                raise
            time.sleep(TOKEN_LOOKUP_PAUSE_S)
            library.reinitialize()
    raise AssertionError("unreachable")


@contextmanager
def open_session(hsm: Hsm, *, rw: bool = False) -> Iterator[Any]:
    """A logged-in session on the profile's token; closed (and logged out) on exit.

    The harness itself only reads (``rw=False``); tests build tokens with ``rw=True``.

    Raises:
        ProbeError: the module cannot be loaded, the token is not found, or the
            PIN is refused or unreadable; the message says which.
    """
    with _LOCK:
        library = _load_library(hsm)
        try:
            slots = library.get_slots(token_present=True)
        except p11errors.PKCS11Error as exc:
            raise ProbeError(f"HSM: {hsm.module}: cannot list slots: {type(exc).__name__}") from None
        try:
            token = _find_token(library, hsm.token_label)
        except p11errors.NoSuchToken:
            seen = []
            for slot in slots:
                try:
                    label = slot.get_token().label
                except p11errors.PKCS11Error:
                    continue
                if label:
                    seen.append(label)
            hint = (f"tokens present: {', '.join(sorted(seen))}" if seen
                    else "no initialised token is visible (check hsm.env, e.g. SOFTHSM2_CONF)")
            raise ProbeError(f"HSM: no token labelled {hsm.token_label!r} in {hsm.module}; "
                             f"{hint}") from None
        except p11errors.MultipleTokensReturned:
            raise ProbeError(f"HSM: more than one token is labelled {hsm.token_label!r}") from None
        try:
            pin = hsm.pin.read("HSM user PIN")
        except ProfileError as exc:
            raise ProbeError(str(exc)) from None
        try:
            session = token.open(rw=rw, user_pin=pin)
        except p11errors.PinIncorrect:
            raise ProbeError(f"HSM: the PIN was refused by token {hsm.token_label!r} "
                             f"(PIN from {hsm.pin.file or 'prompt'})") from None
        except p11errors.PinLocked:
            raise ProbeError(f"HSM: the user PIN of token {hsm.token_label!r} is locked") from None
        except p11errors.PKCS11Error as exc:
            raise ProbeError(f"HSM: cannot log in to token {hsm.token_label!r}: "
                             f"{type(exc).__name__}") from None
        try:
            yield session
        finally:
            with suppress(p11errors.PKCS11Error):
                session.close()


def _listing(hsm: Hsm, token: Any, objects: Iterable[Any]) -> TokenListing:
    library = pkcs11.lib(str(hsm.module))
    described = sorted((_describe(obj) for obj in objects), key=lambda o: (o.label, o.id_hex))
    return TokenListing(
        module=str(hsm.module),
        library=f"{library.manufacturer_id} {library.library_description}".strip(),
        token_label=str(token.label),
        token_serial=_decode_serial(token.serial),
        objects=tuple(described),
    )


def _decode_serial(serial: Any) -> str:
    if isinstance(serial, bytes):
        return serial.decode("ascii", "replace").strip()
    return str(serial).strip()


def _read_values(session: Any, labels: Iterable[str], known_secrets: KnownSecrets) -> KeyValues:
    values: dict[str, bytes] = {}
    unreadable: dict[str, str] = {}
    for label in labels:
        matches = list(session.get_objects({Attribute.LABEL: label}))
        if not matches:
            unreadable[label] = "no object with this label"
            continue
        if len(matches) > 1:
            unreadable[label] = f"{len(matches)} objects share this label"
            continue
        try:
            value = bytes(matches[0][Attribute.VALUE])
        except p11errors.AttributeSensitive:
            unreadable[label] = "the value is sensitive (CKA_SENSITIVE) and cannot be read"
            continue
        except (p11errors.AttributeTypeInvalid, p11errors.PKCS11Error) as exc:
            unreadable[label] = f"cannot read CKA_VALUE: {type(exc).__name__}"
            continue
        try:
            known_secrets.add(value, f"HSM {label}")
        except ValueError:
            unreadable[label] = f"value of {len(value)} bytes is too short to be handled safely"
            continue
        values[label] = value
    return KeyValues(values, unreadable)


def _register_pin(hsm: Hsm, known_secrets: KnownSecrets) -> None:
    try:
        pin = hsm.pin.read("HSM user PIN")
    except ProfileError as exc:
        raise ProbeError(str(exc)) from None
    # KnownSecrets redacts a 4-5 byte PIN as a whole word and refuses a shorter
    # one (SecretTooShort, a ProbeError: the check that needs the PIN is ERROR).
    if len(pin.encode()) >= KnownSecrets.min_length:
        known_secrets.add(pin, "HSM user PIN")


def list_objects(hsm: Hsm, known_secrets: KnownSecrets) -> TokenListing:
    """Every object on the token, with its custody attributes (no values)."""
    return snapshot(hsm, known_secrets, read=()).listing


def read_values(hsm: Hsm, labels: Iterable[str], known_secrets: KnownSecrets) -> KeyValues:
    """The values of the keys under ``labels`` (registered in ``known_secrets`` at once)."""
    return snapshot(hsm, known_secrets, read=tuple(labels)).values


def snapshot(hsm: Hsm, known_secrets: KnownSecrets, *, read: Iterable[str] | None = None,
             read_prefix: str | None = None) -> HsmSnapshot:
    """List the token and read values in one session.

    Args:
        read: labels whose values to read.
        read_prefix: also read every secret key whose label starts with this
            prefix (e.g. the profile's key namespace).
    """
    _register_pin(hsm, known_secrets)
    with open_session(hsm) as session:
        try:
            objects = list(session.get_objects())
        except p11errors.PKCS11Error as exc:
            raise ProbeError(f"HSM: cannot list the objects of token {hsm.token_label!r}: "
                             f"{type(exc).__name__}") from None
        listing = _listing(hsm, session.token, objects)
        wanted = list(read or ())
        if read_prefix is not None:
            wanted += [obj.label for obj in listing.objects
                       if obj.object_class == ObjectClass.SECRET_KEY.name
                       and obj.label.startswith(read_prefix) and obj.label not in wanted]
        values = _read_values(session, wanted, known_secrets)
    return HsmSnapshot(listing, values)


def softhsm_token_dir(hsm: Hsm) -> Path | None:
    """The SoftHSM token directory named by ``SOFTHSM2_CONF`` in ``hsm.env``, if any."""
    conf = hsm.env.get("SOFTHSM2_CONF")
    if not conf:
        return None
    try:
        text = Path(conf).read_text(encoding="utf-8")
    except OSError:
        return None
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "directories.tokendir":
            return Path(value.strip())
    return None
