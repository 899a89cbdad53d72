"""The HSM probe: list a PKCS#11 token's objects and read key values for the auditor.

The probe opens the profile's PKCS#11 module, finds the token by label, logs in
with the PIN (a session that is not logged in sees no private objects), and
returns frozen observations: one :class:`HsmObject` per object with the
attributes an auditor judges custody by, and, on request, the values of keys
the harness needs to prove which keys are in use. Every value read is
registered in :class:`~harness.redaction.KnownSecrets` before it is returned,
so it can never reach a report unredacted.

Every look at the token (:func:`snapshot`, and so :func:`list_objects` and
:func:`read_values`) runs in a child process, forked from a ``forkserver`` that
has imported this module, and is bounded by a timeout. A PKCS#11 call that
never returns cannot be interrupted inside a process: measured here,
p11-kit's client module blocks in ``C_Initialize`` for ever when its server's
socket accepts and never answers (an HSM container that is frozen, a proxy
that is wedged), and pytest-timeout's signal cannot stop a thread blocked in C.
The child is killed instead, and the check that asked is ERROR naming the
module, the address and the timeout. The child also loads the module afresh,
so it sees the token as it is now (after a rotation added or removed keys)
and the configuration of this profile (``hsm.env``, e.g. ``SOFTHSM2_CONF``,
which SoftHSM reads only in ``C_Initialize``).

A *survey* (``snapshot(..., survey=True)``, the custody check's look) also
opens a session WITHOUT the PIN first (login state is shared by every session of
a process, so this comes before the login): every object it sees is readable or
usable by anyone who reaches the module. It fingerprints the key material of
every object with a per-survey random block (:mod:`harness.probes.hsm_objects`
says how; values never leave the child, the block is never stored), and marks
data objects whose value has the shape of a raw key. The PIN is read in the harness
(it may be typed at a prompt) and passed to the child through a pipe; the
values read come back the same way and are registered as known secrets before
:func:`snapshot` returns.

:func:`open_session` (used in-process by the tests to build tokens) still
works on python-pkcs11's per-path cached library: it serialises every use of a
module behind one lock, applies ``hsm.env`` to ``os.environ`` and re-initialises
the library (``C_Finalize`` then ``C_Initialize``, which re-reads the
configuration; measured with python-pkcs11 0.10.1 and SoftHSM 2.6.1).
"""

from __future__ import annotations

import multiprocessing
import os
import secrets
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from multiprocessing import forkserver
from pathlib import Path
from typing import Any, cast

import pkcs11
from pkcs11 import Attribute, ObjectClass
from pkcs11 import exceptions as p11errors

from harness import safe_files
from harness.child_calls import ChildWords, answer_from_child
from harness.outcomes import ProbeError
from harness.policy import TimeoutsPolicy
from harness.probes.hsm_objects import (
    HsmObject as HsmObject,  # re-exported: the probe's observations
)
from harness.probes.hsm_objects import (
    TokenListing as TokenListing,
)
from harness.probes.hsm_objects import (
    key_material_form,
    material_fingerprints,
    token_facts,
    token_fingerprints,
)
from harness.profile import Hsm, ProfileError
from harness.redaction import KnownSecrets, fingerprint

_LOCK = threading.RLock()

# How long one look at the token may take when the caller gives no timeout: the
# policy's default ``timeouts.request_s`` (the checks pass their policy's own).
DEFAULT_TIMEOUT_S = TimeoutsPolicy().request_s
# The children that look at the token are forked from a server process that has
# imported this module (and python-pkcs11) once: a fork costs milliseconds, and
# the harness's own threads (load generators, read-ahead) are never forked.
_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(["__main__", __name__])

_FLAG_ATTRIBUTES: tuple[tuple[str, Attribute], ...] = (
    ("token", Attribute.TOKEN),
    ("private", Attribute.PRIVATE),
    ("sensitive", Attribute.SENSITIVE),
    ("extractable", Attribute.EXTRACTABLE),
    ("always_sensitive", Attribute.ALWAYS_SENSITIVE),
    ("never_extractable", Attribute.NEVER_EXTRACTABLE),
    ("local", Attribute.LOCAL),
    ("modifiable", Attribute.MODIFIABLE),
)


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


def _describe(obj: Any, nonce: bytes | None = None) -> HsmObject:
    """The object's attributes; with a survey ``nonce``, also its material's fingerprints."""
    raw_id = _attribute(obj, Attribute.ID) or b""
    raw_id = bytes(raw_id)
    id_text = raw_id.decode("ascii") if raw_id and all(32 <= b < 127 for b in raw_id) else ""
    flags = {name: _attribute(obj, attr) for name, attr in _FLAG_ATTRIBUTES}
    object_class = _enum_name(_attribute(obj, Attribute.CLASS))
    key_type = _attribute(obj, Attribute.KEY_TYPE)
    key_type_name = _enum_name(key_type) if key_type is not None else None
    value = None
    if nonce is not None or flags["sensitive"] is False:
        value = _attribute(obj, Attribute.VALUE)
    value = bytes(value) if value is not None else None
    value_len = _attribute(obj, Attribute.VALUE_LEN)
    if value_len is None and value is not None:
        value_len = len(value)
    fingerprints: tuple[str, ...] = ()
    if nonce is not None and value is not None and object_class in ("SECRET_KEY", "DATA"):
        # A data object may hold a key as hex / base64 text: its decodings are fingerprinted too.
        fingerprints = material_fingerprints(value, nonce)
    elif nonce is not None and object_class == "SECRET_KEY":
        fingerprints = token_fingerprints(obj, key_type_name, nonce)
    bits = _attribute(obj, Attribute.MODULUS_BITS) if object_class in ("PRIVATE_KEY", "PUBLIC_KEY") else None
    judged_shape = value is not None and object_class == "DATA" and nonce is not None
    key_form = key_material_form(value) if judged_shape and value is not None else None
    return HsmObject(
        object_class=object_class,
        key_type=key_type_name,
        label=str(_attribute(obj, Attribute.LABEL) or ""),
        id_hex=raw_id.hex(),
        id_text=id_text,
        value_len=int(value_len) if value_len is not None else None,
        key_bits=int(bits) if bits is not None else None,
        fingerprints=fingerprints,
        value_read=(value is not None) if nonce is not None else None,
        key_form=key_form,
        key_shaped=(key_form is not None) if judged_shape else None,
        **{name: (bool(flag) if flag is not None else None) for name, flag in flags.items()},
    )


def _load_library(hsm: Hsm) -> Any:
    """The module, loaded once per path and re-initialised with the profile's environment."""
    # SoftHSM reads SOFTHSM2_CONF when initialised: a FIFO there would hold it for ever.
    _softhsm_conf(hsm)
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
def open_session(hsm: Hsm, *, rw: bool = False, pin: str | None = None,
                 login: bool = True) -> Iterator[Any]:
    """A logged-in session on the profile's token; closed (and logged out) on exit.

    The harness itself only reads (``rw=False``), in a child process (:func:`snapshot`);
    tests build tokens with ``rw=True``. ``pin``: the user PIN, when already read
    (else it is read from ``hsm.pin``). ``login=False``: a public session, which sees
    only what anyone reaching the module sees (no PIN is read).

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
        if not login:
            try:
                session = token.open(rw=rw)
            except p11errors.PKCS11Error as exc:
                raise ProbeError(f"HSM: cannot open a session without login on token "
                                 f"{hsm.token_label!r}: {type(exc).__name__}") from None
        elif pin is None:
            try:
                pin = hsm.pin.read("HSM user PIN")
            except ProfileError as exc:
                raise ProbeError(str(exc)) from None
        try:
            if login:
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


def _described(objects: Iterable[Any], nonce: bytes | None) -> tuple[HsmObject, ...]:
    return tuple(sorted((_describe(obj, nonce) for obj in objects), key=lambda o: (o.label, o.id_hex)))


def _listing(hsm: Hsm, token: Any, objects: Iterable[Any], nonce: bytes | None = None,
             public: tuple[HsmObject, ...] | None = None) -> TokenListing:
    library = pkcs11.lib(str(hsm.module))
    return TokenListing(
        module=str(hsm.module),
        library=f"{library.manufacturer_id} {library.library_description}".strip(),
        token_label=str(token.label),
        token_serial=_decode_serial(token.serial),
        objects=_described(objects, nonce),
        facts=token_facts(library, token),
        public_objects=public,
    )


def _decode_serial(serial: Any) -> str:
    if isinstance(serial, bytes):
        return serial.decode("ascii", "replace").strip()
    return str(serial).strip()


def _read_values(session: Any, labels: Iterable[str]) -> tuple[dict[str, bytes], dict[str, str]]:
    """(label → value, label → why it could not be read), in the child process."""
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
        values[label] = value
    return values, unreadable


def _registered(values: Mapping[str, bytes], unreadable: Mapping[str, str],
                known_secrets: KnownSecrets) -> KeyValues:
    """The values, each registered in ``known_secrets`` (one too short to redact is unreadable)."""
    kept: dict[str, bytes] = {}
    reasons = dict(unreadable)
    for label, value in values.items():
        try:
            known_secrets.add(value, f"HSM {label}")
        except ValueError:
            reasons[label] = f"value of {len(value)} bytes is too short to be handled safely"
            continue
        kept[label] = value
    return KeyValues(kept, reasons)


def _register_pin(hsm: Hsm, known_secrets: KnownSecrets) -> str:
    """The user PIN, read once and registered (before anything uses it)."""
    try:
        pin = hsm.pin.read("HSM user PIN")
    except ProfileError as exc:
        raise ProbeError(str(exc)) from None
    # KnownSecrets redacts a 4-5 byte PIN as a whole word and refuses a shorter
    # one (SecretTooShort, a ProbeError: the check that needs the PIN is ERROR).
    if len(pin.encode()) >= KnownSecrets.min_length:
        known_secrets.add(pin, "HSM user PIN")
    return pin


def list_objects(hsm: Hsm, known_secrets: KnownSecrets, *,
                 timeout_s: float = DEFAULT_TIMEOUT_S) -> TokenListing:
    """Every object on the token, with its custody attributes (no values)."""
    return snapshot(hsm, known_secrets, read=(), timeout_s=timeout_s).listing


def read_values(hsm: Hsm, labels: Iterable[str], known_secrets: KnownSecrets, *,
                timeout_s: float = DEFAULT_TIMEOUT_S) -> KeyValues:
    """The values of the keys under ``labels`` (registered in ``known_secrets`` at once)."""
    return snapshot(hsm, known_secrets, read=tuple(labels), timeout_s=timeout_s).values


def snapshot(hsm: Hsm, known_secrets: KnownSecrets, *, read: Iterable[str] | None = None,
             read_prefix: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
             survey: bool = False) -> HsmSnapshot:
    """List the token and read values in one session, in a child process.

    Args:
        read: labels whose values to read.
        read_prefix: also read every secret key whose label starts with this
            prefix (e.g. the profile's key namespace).
        timeout_s: how long the whole look may take (the child is killed after it).
        survey: also list what a session without login sees, and fingerprint every
            object's material (see the module docstring).

    Raises:
        ProbeError: as :func:`open_session`, or the token did not answer in time,
            or the child ended without an answer.
    """
    pin = _register_pin(hsm, known_secrets)
    # The survey's random block: the fingerprints mean nothing without it, and it lives
    # only in this call and in the child.
    nonce = secrets.token_bytes(32) if survey else None
    listing, values, unreadable = _in_child(hsm, pin, tuple(read or ()), read_prefix, timeout_s,
                                            nonce)
    return HsmSnapshot(listing, _registered(values, unreadable, known_secrets))


_Raw = tuple[TokenListing, dict[str, bytes], dict[str, str]]


def _objects_of(hsm: Hsm, session: Any) -> list[Any]:
    try:
        return list(session.get_objects())
    except p11errors.PKCS11Error as exc:
        raise ProbeError(f"HSM: cannot list the objects of token {hsm.token_label!r}: "
                         f"{type(exc).__name__}") from None


def _snapshot_here(hsm: Hsm, pin: str, read: tuple[str, ...], read_prefix: str | None,
                   nonce: bytes | None = None) -> _Raw:
    public: tuple[HsmObject, ...] | None = None
    if nonce is not None:
        # Before the login: a login holds for every session of the process.
        with open_session(hsm, login=False) as anonymous:
            public = _described(_objects_of(hsm, anonymous), nonce)
    with open_session(hsm, pin=pin) as session:
        listing = _listing(hsm, session.token, _objects_of(hsm, session), nonce, public)
        wanted = list(read)
        if read_prefix is not None:
            wanted += [obj.label for obj in listing.objects
                       if obj.object_class == ObjectClass.SECRET_KEY.name
                       and obj.label.startswith(read_prefix) and obj.label not in wanted]
        values, unreadable = _read_values(session, wanted)
    return listing, values, unreadable


def start_child_server() -> None:
    """Start the process the children are forked from, in the background (it imports this
    module and python-pkcs11: 0.45 s measured), so that the first look at the token does
    not wait for it. A failure here is left for that first look to report."""

    def start() -> None:
        with suppress(Exception):
            forkserver.ensure_running()

    threading.Thread(target=start, name="votriz-audit-hsm-forkserver", daemon=True).start()


def _module_description(hsm: Hsm) -> str:
    server = hsm.env.get("P11_KIT_SERVER_ADDRESS")
    return f"PKCS#11 module {hsm.module}" + (f" (server {server})" if server else "")


def _in_child(hsm: Hsm, pin: str, read: tuple[str, ...], read_prefix: str | None,
              timeout_s: float, nonce: bytes | None = None) -> _Raw:
    """:func:`_snapshot_here` in a forked child; its answer, or ProbeError."""
    module, token = _module_description(hsm), hsm.token_label
    # An exception of the module other than ProbeError is named by its type alone.
    return cast(_Raw, answer_from_child(_CONTEXT, _snapshot_here, (hsm, pin, read, read_prefix, nonce),
                                        timeout_s, ChildWords(
        process_name="votriz-audit-hsm",
        cannot_start=f"HSM: cannot start the process that reads token {token!r}",
        too_slow=f"HSM: {module} did not answer within {timeout_s:g} s (token {token!r})",
        ended=f"HSM: the process reading token {token!r} through {module} ended without an answer",
        crashed=f"HSM: {{kind}} while reading token {token!r} through {hsm.module}")))


#: Bytes read at most from the SoftHSM configuration ``SOFTHSM2_CONF`` names (a few lines).
SOFTHSM_CONF_CAP = 64 << 10


def _softhsm_conf(hsm: Hsm) -> str | None:
    """The text of the file ``SOFTHSM2_CONF`` in ``hsm.env`` names; None: none named, or absent.

    Read with the safe reader: a FIFO, device or directory is refused without blocking.

    Raises:
        ProbeError: it is there but is no regular file, too large, unreadable or not UTF-8.
    """
    conf = hsm.env.get("SOFTHSM2_CONF")
    if not conf or not os.path.lexists(conf):
        return None
    try:
        return safe_files.read_text(Path(conf), "SoftHSM configuration", SOFTHSM_CONF_CAP)
    except safe_files.FileRefused as exc:
        raise ProbeError(f"HSM: hsm.env SOFTHSM2_CONF: {exc}") from None


def softhsm_token_dir(hsm: Hsm) -> Path | None:
    """The SoftHSM token directory named by ``SOFTHSM2_CONF`` in ``hsm.env``, if any.

    Raises:
        ProbeError: as :func:`_softhsm_conf`.
    """
    text = _softhsm_conf(hsm)
    if text is None:
        return None
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "directories.tokendir":
            return Path(value.strip())
    return None
