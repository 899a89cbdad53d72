"""The HSM probe's observations: the token's objects, what the token says about itself,
and keyed fingerprints of key material.

The fingerprints and token facts are computed inside the child process of
:mod:`harness.probes.hsm`, where the values are: a value read from the token
never leaves the child, only its keyed fingerprints do.

Keyed fingerprints. Each survey draws a fresh random ``nonce`` (32 bytes, kept in
memory for that survey only, never stored or printed). The fingerprint of key
material ``K`` is ``HMAC-SHA256(key=K, message=nonce)``: the material is the HMAC
key and the per-run random value the message, so that a token can compute the
same fingerprint for a key it will not let out (``C_Sign`` with
``CKM_SHA256_HMAC``), and the harness computes it for every value it can read
(secret keys that are not sensitive, data objects). For an AES key that may
encrypt but not sign, the fingerprint is ``AES-ECB(K, nonce[:16])`` (the classic
key check value, over a random block instead of the zero block), computed by the
token or by the harness alike. Two objects hold the same material when they share a
fingerprint of the same method. Without the nonce a fingerprint says nothing about
the material, and the nonce dies with the survey.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import math
import re
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

HMAC_METHOD = "hmac-sha256"
AES_METHOD = "aes-ecb-check-block"
#: How each method is described in evidence.
METHOD_WORDS = {
    HMAC_METHOD: "HMAC-SHA256 keyed by the material over a per-run random block",
    AES_METHOD: "AES-ECB encryption of a per-run random block (key check value)",
}
#: Value lengths (bytes) of raw symmetric keys: a data object of one of these lengths and
#: high entropy holds key material.
KEY_LENGTHS = (16, 24, 32, 48, 64)
#: Fraction of the largest possible byte entropy (log2 of the length) a value must reach to
#: count as random. 32 random bytes measure 4.8 of 5 bits (0.96); 32 characters of English
#: text about 3.9 (0.78).
ENTROPY_FRACTION = 0.85
#: Values longer than this are not decoded as text (the longest PEM private key of
#: RSA-8192 is about 6.5 kB); they are still judged as raw bytes.
DECODE_LIMIT = 16 * 1024
_PREFIX = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}\s*[:=]\s*")
_PEM = re.compile(rb"-----BEGIN ([A-Z0-9 ]{1,64})-----(.*?)-----END \1-----", re.DOTALL)
_HEX = re.compile(r"^(?:0x)?([0-9A-Fa-f]+)$")
_BASE64 = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")
_BASE64URL = re.compile(r"^[A-Za-z0-9_-]+={0,2}$")
#: An identifier made of words: letters (and _ -) only, with a run of 6 lowercase letters.
#: Base64 of 16 random bytes has this shape with a probability of about 5e-4.
_WORDS = re.compile(r"^(?=.*[a-z]{6})[A-Za-z_-]+$")


def value_fingerprints(value: bytes, nonce: bytes) -> tuple[str, ...]:
    """Every fingerprint the harness can compute from a readable value (``method:hex``)."""
    prints = [f"{HMAC_METHOD}:{hmac.new(value, nonce, hashlib.sha256).hexdigest()}"]
    if len(value) in (16, 24, 32):
        encryptor = Cipher(algorithms.AES(value), modes.ECB()).encryptor()
        block = encryptor.update(nonce[:16]) + encryptor.finalize()
        prints.append(f"{AES_METHOD}:{block.hex()}")
    return tuple(prints)


def token_fingerprints(key: Any, key_type: str | None, nonce: bytes) -> tuple[str, ...]:
    """The fingerprints a token computes for a secret key it will not let out (may be empty).

    ``key`` is a python-pkcs11 secret key; the token refuses an operation the key's
    attributes do not allow (CKA_SIGN, CKA_ENCRYPT), and then that method is skipped.
    """
    from pkcs11 import Mechanism
    from pkcs11 import exceptions as p11errors

    prints: list[str] = []
    refused = (p11errors.PKCS11Error, AttributeError, TypeError)
    with contextlib.suppress(*refused):
        prints.append(f"{HMAC_METHOD}:{bytes(key.sign(nonce, mechanism=Mechanism.SHA256_HMAC)).hex()}")
    if key_type == "AES":
        with contextlib.suppress(*refused):
            block = bytes(key.encrypt(nonce[:16], mechanism=Mechanism.AES_ECB))
            prints.append(f"{AES_METHOD}:{block.hex()}")
    return tuple(prints)


def byte_entropy(value: bytes) -> float:
    """Shannon entropy of the value's bytes, in bits per byte."""
    if not value:
        return 0.0
    counts = Counter(value)
    return -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())


def _random_bytes(value: bytes) -> bool:
    return len(value) in KEY_LENGTHS and byte_entropy(value) >= ENTROPY_FRACTION * math.log2(len(value))


def _texts(value: bytes) -> list[str]:
    """The value as text, trimmed, without a ``name=`` / ``NAME:`` prefix or quotes (each form once)."""
    try:
        text = value.decode("ascii").strip()
    except UnicodeDecodeError:
        return []
    forms = [text]
    bare = _PREFIX.sub("", text, count=1).strip()
    forms.append(bare)
    if len(bare) >= 2 and bare[0] == bare[-1] and bare[0] in "\"'":
        forms.append(bare[1:-1].strip())
    return list(dict.fromkeys(form for form in forms if form))


def decoded_key_candidates(value: bytes) -> tuple[tuple[str, bytes], ...]:
    """Every ``(encoding, bytes)`` a text value decodes to as hex, base64 or base64url.

    The value is trimmed and a ``key=`` / ``KEY:`` style prefix and quotes are taken off
    first. A canonical UUID, and a base64-alphabet identifier made of words
    (``ThisIsTheBackupLabel``), are identifiers, not key material, and are not decoded.
    Values over :data:`DECODE_LIMIT` are not decoded.
    """
    if len(value) > DECODE_LIMIT:
        return ()
    found: dict[bytes, str] = {}
    for text in _texts(value):
        with contextlib.suppress(ValueError):
            if str(uuid.UUID(text)) == text.lower():
                continue
        hex_match = _HEX.match(text)
        if hex_match and len(hex_match.group(1)) % 2 == 0:
            found.setdefault(bytes.fromhex(hex_match.group(1)), "hex")
            continue
        for name, pattern, altchars in (("base64", _BASE64, b"+/"), ("base64url", _BASE64URL, b"-_")):
            if not pattern.match(text) or _WORDS.match(text):
                continue
            with contextlib.suppress(binascii.Error, ValueError):
                padded = text.rstrip("=") + "=" * (-len(text.rstrip("=")) % 4)
                found.setdefault(base64.b64decode(padded, altchars=altchars, validate=True), name)
    return tuple((name, decoded) for decoded, name in found.items())


def _pem_private_key(value: bytes) -> str | None:
    """The label of a PEM block holding a private or secret key whose body is base64 (if any)."""
    if len(value) > DECODE_LIMIT:
        return None
    for match in _PEM.finditer(value):
        label = match.group(1).decode("ascii")
        if "PRIVATE KEY" not in label and "SECRET" not in label:
            continue
        # Legacy encrypted PEM carries "Proc-Type: ..." header lines before the body.
        body = b"".join(line.strip() for line in match.group(2).splitlines() if b":" not in line)
        with contextlib.suppress(binascii.Error, ValueError):
            if len(base64.b64decode(body, validate=True)) >= 16:
                return label
    return None


def key_material_form(value: bytes) -> str | None:
    """How a value holds key material, in words; None when it does not look like a key.

    Raw bytes of a symmetric key's length and the entropy of random bytes; the same
    after decoding hex, base64 or base64url text (trimmed, ``key=`` prefix taken off);
    or a PEM block of a private or secret key.
    """
    if _random_bytes(value):
        return f"{len(value)} bytes of random-looking data"
    label = _pem_private_key(value)
    if label is not None:
        return f"a PEM {label} block ({len(value)} bytes)"
    for encoding, decoded in decoded_key_candidates(value):
        if _random_bytes(decoded):
            return f"{encoding} text of {len(decoded)} random-looking bytes ({len(value)} bytes)"
    return None


def is_key_shaped(value: bytes) -> bool:
    """Whether a value holds key material by its shape (see :func:`key_material_form`)."""
    return key_material_form(value) is not None


def material_fingerprints(value: bytes, nonce: bytes) -> tuple[str, ...]:
    """The value's fingerprints and those of every hex / base64 decoding of it, so that a data
    object holding a key as text shares a fingerprint with the key."""
    prints = list(value_fingerprints(value, nonce))
    for _, decoded in decoded_key_candidates(value):
        if decoded:
            prints += [fp for fp in value_fingerprints(decoded, nonce) if fp not in prints]
    return tuple(prints)


@dataclass(frozen=True)
class TokenFacts:
    """What the slot and the token say about themselves (``C_GetSlotInfo``, ``C_GetTokenInfo``).

    Attributes:
        manufacturer, model, serial: the token's ``manufacturerID``, ``model``, ``serialNumber``.
        hardware_version, firmware_version: the token's versions (``major.minor``).
        token_flags: names of the token's flags set (``RNG``, ``LOGIN_REQUIRED`` ...).
        slot_description, slot_manufacturer: the slot's ``slotDescription``, ``manufacturerID``.
        slot_flags: names of the slot's flags set (``TOKEN_PRESENT``, ``HW_SLOT``,
            ``REMOVABLE_DEVICE``).
        library: the module's manufacturer and description (``C_GetInfo``).
    """

    manufacturer: str
    model: str
    serial: str
    hardware_version: str
    firmware_version: str
    token_flags: tuple[str, ...]
    slot_description: str
    slot_manufacturer: str
    slot_flags: tuple[str, ...]
    library: str = ""

    @property
    def hardware_slot(self) -> bool:
        """The slot reports CKF_HW_SLOT (a hardware slot, not a software one)."""
        return "HW_SLOT" in self.slot_flags

    def as_evidence(self) -> dict[str, Any]:
        """A JSON-able view (every field)."""
        return {"manufacturer": self.manufacturer, "model": self.model, "serial": self.serial,
                "hardware_version": self.hardware_version, "firmware_version": self.firmware_version,
                "token_flags": list(self.token_flags), "slot_description": self.slot_description,
                "slot_manufacturer": self.slot_manufacturer, "slot_flags": list(self.slot_flags),
                "library": self.library}


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("ascii", "replace").strip()
    return str(value or "").strip()


def _version(value: Any) -> str:
    if isinstance(value, tuple) and len(value) == 2:
        return f"{value[0]}.{value[1]}"
    return _text(value)


def _flag_names(flags: Any, enum: Any) -> tuple[str, ...]:
    try:
        number = int(flags)
    except (TypeError, ValueError):
        return ()
    return tuple(str(member.name) for member in enum if member.value and number & int(member.value))


def token_facts(library: Any, token: Any) -> TokenFacts:
    """The token's and its slot's self-description (python-pkcs11 objects)."""
    from pkcs11.constants import SlotFlag, TokenFlag

    slot = token.slot
    return TokenFacts(
        manufacturer=_text(token.manufacturer_id), model=_text(token.model),
        serial=_text(token.serial), hardware_version=_version(token.hardware_version),
        firmware_version=_version(token.firmware_version),
        token_flags=_flag_names(token.flags, TokenFlag),
        slot_description=_text(slot.slot_description), slot_manufacturer=_text(slot.manufacturer_id),
        slot_flags=_flag_names(slot.flags, SlotFlag),
        library=f"{_text(library.manufacturer_id)} {_text(library.library_description)}".strip())


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
        modifiable: ``CKA_MODIFIABLE``.
        key_bits: ``CKA_MODULUS_BITS`` of an RSA key; None otherwise.
        fingerprints: keyed fingerprints of its material (``method:hex``, survey only;
            see :mod:`harness.probes.hsm_material`); never shown, compared only.
        value_read: whether the session could read its ``CKA_VALUE`` (survey only).
        key_shaped: a readable value has the length and entropy of a raw key, as bytes or
            decoded from hex / base64 text, or is a PEM private key (survey only).
        key_form: how it holds key material, in words (:func:`key_material_form`), when
            key-shaped.
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
    modifiable: bool | None = None
    key_bits: int | None = None
    fingerprints: tuple[str, ...] = field(default=(), repr=False)
    value_read: bool | None = None
    key_shaped: bool | None = None
    key_form: str | None = None

    @property
    def fingerprint_method(self) -> str:
        """How its material was fingerprinted, in words ('none' when it could not be)."""
        methods = sorted({fp.partition(":")[0] for fp in self.fingerprints})
        return "; ".join(METHOD_WORDS.get(m, m) for m in methods) or "none"

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
            "value_len": self.value_len, "modifiable": self.modifiable,
            **({"key_bits": self.key_bits} if self.key_bits is not None else {}),
            **({"fingerprint_method": self.fingerprint_method, "value_read": self.value_read}
               if self.value_read is not None else {}),
            **({"key_shaped": self.key_shaped} if self.key_shaped is not None else {}),
            **({"key_form": self.key_form} if self.key_form is not None else {}),
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
        facts: what the slot and token say about themselves (None when not asked).
        public_objects: the objects a session WITHOUT login sees (survey only; None when
            not surveyed).
    """

    module: str
    library: str
    token_label: str
    token_serial: str
    objects: tuple[HsmObject, ...]
    facts: TokenFacts | None = None
    public_objects: tuple[HsmObject, ...] | None = None

    def labels(self) -> tuple[str, ...]:
        return tuple(obj.label for obj in self.objects)

    def by_label(self, label: str) -> tuple[HsmObject, ...]:
        return tuple(obj for obj in self.objects if obj.label == label)
