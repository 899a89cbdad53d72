"""Fernet tokens, as the published page promises them for OAuth tokens.

A Fernet token (https://github.com/fernet/spec) is the URL-safe base64 of::

    version (1 byte, 0x80) | timestamp (8 bytes, big-endian seconds)
    | IV (16 bytes) | AES-128-CBC ciphertext (a multiple of 16 bytes)
    | HMAC-SHA256 (32 bytes) over everything before it

:func:`parse_fernet_token` checks the structure without a key;
:func:`verify_fernet_token` also checks the HMAC under a key ring and the
timestamp against ``now`` (the token is authentic); :func:`validate_fernet_token`
also checks the plaintext's PKCS#7 padding, as ``cryptography``'s Fernet does
when it decrypts (the token is valid); :func:`decrypt_fernet_token` also returns
the plaintext. All of them raise only :class:`FernetTokenError`, whose
``reason`` says what is wrong, on any input at all (``None``, megabytes,
non-UTF-8 bytes, the wrong type): a column full of garbage is counted, never a
crash.

An authentic token with broken padding (``BAD_PADDING``) was made by a writer
that holds the key but is not a correct Fernet implementation: a correct one
refuses to decrypt it, so the value it stands for cannot be read back.

:class:`FernetRingVerifier` gives :func:`validate_fernet_token`'s answer for
millions of cells at one time under one ring: valid tokens are taken in batches
along one short path that keeps a 16-byte fingerprint of each and makes no
other object, and anything else is handed to :func:`validate_fernet_token`
itself, so the reason for a bad cell is the same.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import os
import re
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypedDict, Unpack

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

VERSION = 0x80
_HEADER = 1 + 8 + 16
_MAC = 32
_BLOCK = 16
#: The shortest possible token: header, one cipher block, HMAC.
MIN_TOKEN_BYTES = _HEADER + _BLOCK + _MAC
#: The Fernet specification's clock skew; the audit policy may allow more.
SPEC_MAX_CLOCK_SKEW_S = 60

_URLSAFE_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
#: As _TO_STANDARD, and '+' and '/' (not URL-safe) become '*' (not base64 at all).
_TO_STANDARD_STRICT = bytes.maketrans(b"-_+/", b"+/**")
_STAMP = struct.Struct(">Q").unpack_from
_KEY_TEXT = re.compile(r"^[A-Za-z0-9_-]{43}=$")


class FernetFailure(enum.StrEnum):
    """Why a value is not a valid Fernet token (or not one of ours).

    Attributes:
        MISSING: no value at all (SQL NULL or empty).
        NOT_TEXT: not str or bytes (e.g. a number).
        NOT_BASE64: not URL-safe base64 with correct padding.
        TOO_SHORT: fewer bytes than a header, one block and an HMAC.
        BAD_VERSION: the first byte is not 0x80.
        BAD_LENGTH: the ciphertext is not a whole number of AES blocks.
        FUTURE_TIMESTAMP: stamped further in the future than the allowed skew.
        EXPIRED: older than the time-to-live asked for.
        BAD_HMAC: the HMAC verifies under none of the keys given.
        BAD_PADDING: authentic, but the plaintext's PKCS#7 padding is broken.
    """

    MISSING = "missing"
    NOT_TEXT = "not_text"
    NOT_BASE64 = "not_base64"
    TOO_SHORT = "too_short"
    BAD_VERSION = "bad_version"
    BAD_LENGTH = "bad_length"
    FUTURE_TIMESTAMP = "future_timestamp"
    EXPIRED = "expired"
    BAD_HMAC = "bad_hmac"
    BAD_PADDING = "bad_padding"


class FernetTokenError(Exception):
    """A value is not a valid Fernet token; ``reason`` says why (safe to print, no token).

    Attributes:
        reason: the first failure found, in the order structure → time → HMAC → padding.
        detail: one human sentence.
    """

    def __init__(self, reason: FernetFailure, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


class FernetKeyError(ValueError):
    """A key is not a Fernet key (32 bytes, or their URL-safe base64)."""


@dataclass(frozen=True)
class FernetKey:
    """One Fernet key: 16 bytes of HMAC signing key then 16 bytes of AES key.

    Attributes:
        raw: the 32 key bytes (``urlsafe_b64decode`` of the textual key).
        label: where it came from (e.g. the HSM label ``votriz/token-encryption/v1``).
    """

    raw: bytes = field(repr=False)
    label: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.raw, bytes) or len(self.raw) != 32:
            raise FernetKeyError(f"a Fernet key is 32 bytes; {self.label or 'this key'} is not")

    @classmethod
    def from_text(cls, text: str | bytes, label: str = "") -> FernetKey:
        """The key from its usual textual form (URL-safe base64 of 32 bytes)."""
        value = text.decode("ascii", "replace") if isinstance(text, bytes) else text
        if not _KEY_TEXT.match(value.strip()):
            raise FernetKeyError(f"{label or 'the key'} is not URL-safe base64 of 32 bytes")
        return cls(base64.urlsafe_b64decode(value.strip()), label)

    @property
    def signing_key(self) -> bytes:
        return self.raw[:16]

    @property
    def encryption_key(self) -> bytes:
        return self.raw[16:]

    def text(self) -> str:
        """The textual form, as ``cryptography.fernet.Fernet`` takes it (a secret)."""
        return base64.urlsafe_b64encode(self.raw).decode("ascii")


@dataclass(frozen=True)
class FernetToken:
    """The parts of a structurally valid token (nothing verified yet).

    Attributes:
        version: always 0x80 once parsed.
        timestamp: seconds since the epoch the token claims it was made.
        iv: the 16-byte AES-CBC initialisation vector.
        ciphertext: the AES ciphertext (a multiple of 16 bytes).
        hmac: the 32-byte HMAC-SHA256 tag.
        signed: the bytes the tag covers (version through ciphertext).
    """

    version: int
    timestamp: int
    iv: bytes
    ciphertext: bytes = field(repr=False)
    hmac: bytes = field(repr=False)
    signed: bytes = field(repr=False)


@dataclass(frozen=True)
class VerifiedFernetToken:
    """A token whose HMAC verified under one of the keys and whose time is acceptable.

    Attributes:
        token: its parts.
        key_index: position of the verifying key in the ring given.
        key_label: that key's label.
    """

    token: FernetToken
    key_index: int
    key_label: str


@dataclass(frozen=True)
class DecryptedFernetToken:
    """A verified token and its plaintext (a secret: never print it).

    Attributes:
        verified: the verified token.
        plaintext: the decrypted bytes.
    """

    verified: VerifiedFernetToken
    plaintext: bytes = field(repr=False)


def _as_bytes(token: object) -> bytes:
    if token is None:
        raise FernetTokenError(FernetFailure.MISSING, "the value is NULL")
    if isinstance(token, str):
        try:
            data = token.encode("ascii")
        except UnicodeEncodeError:
            raise FernetTokenError(FernetFailure.NOT_BASE64,
                                   "the value holds non-ASCII characters") from None
    elif isinstance(token, bytes | bytearray | memoryview):
        data = bytes(token)
    else:
        raise FernetTokenError(FernetFailure.NOT_TEXT,
                               f"the value is a {type(token).__name__}, not text")
    if not data:
        raise FernetTokenError(FernetFailure.MISSING, "the value is empty")
    return data


def _decode(data: bytes) -> bytes:
    body = data.rstrip(b"=")
    if len(data) % 4 or len(data) - len(body) > 2 or body.translate(None, _URLSAFE_ALPHABET):
        raise FernetTokenError(FernetFailure.NOT_BASE64,
                               "the value is not URL-safe base64 with padding")
    try:
        return binascii.a2b_base64(data.translate(_TO_STANDARD), strict_mode=True)
    except binascii.Error:
        raise FernetTokenError(FernetFailure.NOT_BASE64, "the value is not valid base64") from None


def parse_fernet_token(token: object) -> FernetToken:
    """Split a token into its parts, checking only its structure (no key, no clock).

    Raises:
        FernetTokenError: MISSING, NOT_TEXT, NOT_BASE64, TOO_SHORT, BAD_VERSION or BAD_LENGTH.
    """
    raw = _decode(_as_bytes(token))
    if not raw:
        raise FernetTokenError(FernetFailure.TOO_SHORT, "the value decodes to no bytes")
    if raw[0] != VERSION:
        raise FernetTokenError(FernetFailure.BAD_VERSION, f"version byte 0x{raw[0]:02x}, not 0x80")
    # A body that cannot hold a header, an HMAC and some ciphertext is too short;
    # one that can, but whose ciphertext is not whole blocks, has a bad length.
    if len(raw) <= _HEADER + _MAC:
        raise FernetTokenError(FernetFailure.TOO_SHORT,
                               f"{len(raw)} bytes; a token has at least {MIN_TOKEN_BYTES}")
    if (len(raw) - _HEADER - _MAC) % _BLOCK:
        raise FernetTokenError(FernetFailure.BAD_LENGTH,
                               "the ciphertext is not a whole number of 16-byte blocks")
    return FernetToken(
        version=raw[0],
        timestamp=int.from_bytes(raw[1:9], "big"),
        iv=raw[9:_HEADER],
        ciphertext=raw[_HEADER:-_MAC],
        hmac=raw[-_MAC:],
        signed=raw[:-_MAC],
    )


def has_fernet_structure(value: object) -> bool:
    """Whether ``value`` parses as a Fernet token: a scan's sorting test, not a verification."""
    try:
        parse_fernet_token(value)
    except FernetTokenError:
        return False
    return True


def _epoch(now: datetime | float | None) -> float:
    if now is None:
        return time.time()
    if isinstance(now, datetime):
        return now.timestamp()
    return float(now)


class FernetTime(TypedDict, total=False):
    """When a token is judged: :func:`verify_fernet_token`'s keywords, which
    :func:`decrypt_fernet_token` and :func:`validate_fernet_token` pass on unchanged
    (so that all three judge a timestamp alike, with one set of defaults).
    """

    now: datetime | float | None
    ttl_s: float | None
    max_clock_skew_s: float


def verify_fernet_token(
    token: object,
    keys: Sequence[FernetKey],
    *,
    now: datetime | float | None = None,
    ttl_s: float | None = None,
    max_clock_skew_s: float = SPEC_MAX_CLOCK_SKEW_S,
) -> VerifiedFernetToken:
    """Check structure, time and HMAC under the first key of ``keys`` that verifies.

    Args:
        token: the stored value (str or bytes; anything else is a typed failure).
        keys: the key ring, any order; the result names the key that verified.
        now: the time to judge timestamps at (default: the clock).
        ttl_s: reject tokens older than this; None (the default) accepts any age,
            as stored OAuth tokens legitimately are old.
        max_clock_skew_s: reject tokens stamped further than this in the future.

    Raises:
        FernetTokenError: any failure but BAD_PADDING (which needs decryption).
    """
    parsed = parse_fernet_token(token)
    current = _epoch(now)
    if parsed.timestamp > current + max_clock_skew_s:
        raise FernetTokenError(FernetFailure.FUTURE_TIMESTAMP,
                               f"stamped {parsed.timestamp - current:.0f} s in the future")
    if ttl_s is not None and parsed.timestamp + ttl_s < current:
        raise FernetTokenError(FernetFailure.EXPIRED, f"older than the time-to-live of {ttl_s:g} s")
    for index, key in enumerate(keys):
        expected = hmac.new(key.signing_key, parsed.signed, hashlib.sha256).digest()
        if hmac.compare_digest(expected, parsed.hmac):
            return VerifiedFernetToken(parsed, index, key.label)
    raise FernetTokenError(FernetFailure.BAD_HMAC,
                           f"the HMAC verifies under none of the {len(keys)} key(s) given")


def decrypt_fernet_token(
    token: object, keys: Sequence[FernetKey], **when: Unpack[FernetTime]
) -> DecryptedFernetToken:
    """Verify as :func:`verify_fernet_token`, then decrypt under the verifying key.

    Raises:
        FernetTokenError: any failure, including BAD_PADDING.
    """
    verified = verify_fernet_token(token, keys, **when)
    parts = verified.token
    plaintext = _unpadded(keys[verified.key_index], parts.iv, parts.ciphertext)
    return DecryptedFernetToken(verified, plaintext)


def validate_fernet_token(
    token: object, keys: Sequence[FernetKey], **when: Unpack[FernetTime]
) -> VerifiedFernetToken:
    """Verify as :func:`verify_fernet_token`, then check the plaintext's padding; keep no plaintext.

    ``cryptography``'s Fernet decrypts with AES-128-CBC and refuses a plaintext
    whose PKCS#7 padding is broken. Padding lives in the last block only, and
    in CBC that block is the AES decryption of the last ciphertext block XOR
    the block before it (the IV for a one-block token), so only that block is
    decrypted: the same answer as a whole decryption, at the cost of one block
    whatever the token's size.

    Raises:
        FernetTokenError: any failure, including BAD_PADDING.
    """
    verified = verify_fernet_token(token, keys, **when)
    chained = verified.token.iv + verified.token.ciphertext
    _unpadded(keys[verified.key_index], chained[-2 * _BLOCK:-_BLOCK], chained[-_BLOCK:])
    return verified


def _unpadded(key: FernetKey, iv: bytes, ciphertext: bytes) -> bytes:
    """``ciphertext`` decrypted (AES-CBC, ``key``, ``iv``) and unpadded (PKCS#7), or BAD_PADDING."""
    decryptor = Cipher(algorithms.AES(key.encryption_key), modes.CBC(iv)).decryptor()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise FernetTokenError(FernetFailure.BAD_PADDING,
                               "authentic, but the plaintext padding is broken") from None


def encrypt_fernet_token(
    plaintext: bytes,
    key: FernetKey,
    *,
    now: datetime | float | None = None,
    iv: bytes | None = None,
) -> str:
    """Make a token (for test vectors and benchmarks; the audit itself never encrypts).

    Args:
        plaintext: the bytes to encrypt.
        key: the key.
        now: the timestamp to stamp (default: the clock).
        iv: a fixed IV (test vectors only); default 16 random bytes.
    """
    iv = os.urandom(16) if iv is None else iv
    if len(iv) != 16:
        raise ValueError("a Fernet IV is 16 bytes")
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key.encryption_key), modes.CBC(iv)).encryptor()
    body = (bytes([VERSION]) + int(_epoch(now)).to_bytes(8, "big") + iv
            + encryptor.update(padded) + encryptor.finalize())
    tag = hmac.new(key.signing_key, body, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(body + tag).decode("ascii")


#: What a column scan keeps of a valid token: (position of the verifying key in
#: the ring, the 16-byte IV, the AES ciphertext).
VerifiedCell = tuple[int, bytes, bytes]
#: Bytes a column scan keeps of each valid token to count repeats: the IV's first
#: 8 bytes, then the ciphertext's last 8 bytes (see :func:`fingerprint`).
FINGERPRINT_BYTES = 16


def fingerprint(iv: bytes, ciphertext: bytes) -> bytes:
    """16 bytes that tell tokens with repeated IVs or ciphertexts apart from the rest.

    The IV's first 8 bytes and the ciphertext's last 8 bytes. Equal IVs (equal
    ciphertexts) always give equal halves. Two different random IVs share their
    first 8 bytes with probability 2^-64; two different AES-CBC ciphertexts end in
    the same 8 bytes with probability 2^-64 (the last block is a block-cipher
    output that depends on every earlier block and the IV), so a repeated half
    is reported as a repeated IV (ciphertext).
    """
    return iv[:8] + ciphertext[-8:]


class FernetRingVerifier:
    """:func:`validate_fernet_token` for many cells under one key ring at one time.

    ``accept(rows, ...)`` takes the cells that pass every check in one straight
    path (ASCII text or bytes, URL-safe base64 with correct padding, version
    0x80, whole blocks, an acceptable time, an HMAC under a key of the ring,
    tried in order, then the plaintext's PKCS#7 padding under that key) with no
    per-cell objects but a fingerprint, and hands back every other row, in
    order; ``verify(cell)`` gives the reference answer (the verifying key, or
    the :class:`FernetTokenError` reason) for those. Together they say what
    :func:`validate_fernet_token` says of every cell.

    The padding of a batch's authentic cells is judged at the end of the batch
    by one AES-CBC decryptor per key over every cell's last two blocks and a
    whole-batch padding test (see :func:`_badly_padded`): a decryptor made per
    cell cost 15 µs (measured), about five times the whole path.

    Attributes:
        keys: the key ring, in the order keys are tried.
        now: the time timestamps are judged at (seconds since the epoch).
        ttl_s: the time-to-live, or None for any age.
        max_clock_skew_s: how far in the future a token may be stamped.
        accept: ``accept(rows, value_at, per_key, fingerprints)`` → the rows not
            accepted. For each accepted row (whose item ``value_at`` is a valid
            token), ``per_key[index of the verifying key]`` is incremented and
            the token's :func:`fingerprint` appended to the bytearray ``fingerprints``.
    """

    def __init__(self, keys: Sequence[FernetKey], *, now: datetime | float | None = None,
                 ttl_s: float | None = None,
                 max_clock_skew_s: float = SPEC_MAX_CLOCK_SKEW_S) -> None:
        self.keys = tuple(keys)
        self.now = _epoch(now)
        self.ttl_s = ttl_s
        self.max_clock_skew_s = max_clock_skew_s
        self.accept = self._straight_path()

    def verify(self, token: object) -> VerifiedCell:
        """``(index of the verifying key, IV, ciphertext)`` of a valid token.

        Raises:
            FernetTokenError: the reason :func:`validate_fernet_token` gives.
        """
        verified = validate_fernet_token(token, self.keys, now=self.now, ttl_s=self.ttl_s,
                                         max_clock_skew_s=self.max_clock_skew_s)
        return verified.key_index, verified.token.iv, verified.token.ciphertext

    def _straight_path(self) -> Callable[[Sequence[Sequence[Any]], int, list[int], bytearray],
                                         list[Sequence[Any]]]:
        """``accept``: a closure, so that every name it uses is a local (it runs per cell)."""
        now, ttl_s = self.now, self.ttl_s
        pads = tuple(enumerate(_hmac_pads(key.signing_key) for key in self.keys))
        # The same expressions as verify_fernet_token's, so that a boundary is judged alike.
        latest = now + self.max_clock_skew_s
        a2b, table, stamp_of, same = (binascii.a2b_base64, _TO_STANDARD_STRICT, _STAMP,
                                      hmac.compare_digest)
        mac, whole, tail, pair = _MAC, _HEADER + _MAC, -_MAC - 8, -_MAC - 2 * _BLOCK
        encryption_keys = tuple(key.encryption_key for key in self.keys)

        def accept(rows: Sequence[Sequence[Any]], value_at: int, per_key: list[int],
                   fingerprints: bytearray) -> list[Sequence[Any]]:
            rest = []
            # Authentic cells' rows and key indexes, in row order, and per key their last
            # two cipher blocks (or IV and only block), end to end; counted as valid at
            # once and taken back if their padding is broken.
            start, authentic, key_of = len(fingerprints), [], []
            last_pairs = [bytearray() for _ in encryption_keys]
            for row in rows:
                data = row[value_at]
                if type(data) is not bytes:
                    if type(data) is str and data.isascii():
                        data = data.encode("ascii")
                    else:
                        rest.append(row)
                        continue
                # Whole quads, and no third '=' from the end (so at most two padding bytes).
                if data and not len(data) & 3 and data[-3:-2] != b"=":
                    # One translation both maps the URL-safe alphabet to the standard
                    # one and turns the standard-only '+' and '/' into a byte strict
                    # base64 refuses, so that strict decoding alone refuses every byte
                    # outside the URL-safe alphabet and any misplaced padding.
                    try:
                        raw = a2b(data.translate(table), strict_mode=True)
                    except binascii.Error:
                        raw = b""
                    size = len(raw)
                    if (size > whole and raw[0] == VERSION and not (size - whole) % _BLOCK
                            and stamp_of(raw, 1)[0] <= latest
                            and (ttl_s is None or stamp_of(raw, 1)[0] + ttl_s >= now)):
                        signed = raw[:-mac]
                        for index, (inner, outer) in pads:
                            digest = inner.copy()
                            digest.update(signed)
                            final = outer.copy()
                            final.update(digest.digest())
                            if same(final.digest(), raw[-mac:]):
                                per_key[index] += 1
                                fingerprints += raw[9:17]
                                fingerprints += raw[tail:-mac]
                                last_pairs[index] += raw[pair:-mac]
                                authentic.append(row)
                                key_of.append(index)
                                break
                        else:
                            rest.append(row)
                        continue
                rest.append(row)
            bad = _badly_padded(encryption_keys, last_pairs, key_of) if authentic else []
            if bad:
                # Rare (a writer that is not a correct Fernet implementation): take them
                # back, and put them in the rest in the order given (examples name the first).
                for at in reversed(bad):
                    per_key[key_of[at]] -= 1
                    del fingerprints[start + at * FINGERPRINT_BYTES:
                                     start + (at + 1) * FINGERPRINT_BYTES]
                position = {id(row): at for at, row in enumerate(rows)}
                rest = sorted(rest + [authentic[at] for at in bad],
                              key=lambda row: position[id(row)])
            return rest

        return accept


#: Byte → 1 unless it is a PKCS#7 padding length (1 to 16).
_NOT_A_PADDING_LENGTH = bytes(0 if 1 <= value <= _BLOCK else 1 for value in range(256))
#: [back]: padding length → 0xFF if a padding that long covers the byte ``back`` before the last.
_COVERS = [bytes(0xFF if value > back else 0 for value in range(256)) for back in range(_BLOCK)]


def _badly_padded(encryption_keys: Sequence[bytes], last_pairs: Sequence[bytearray],
                  key_of: Sequence[int]) -> list[int]:
    """Positions (in ``key_of``'s order) of the authentic cells whose padding is broken.

    ``last_pairs[k]`` holds, end to end, each cell of key ``k``'s block before the
    last (or IV) and last block. In CBC, plaintext block i is AES-decrypt(C_i) XOR
    C_(i-1), so one CBC decryptor fed the pairs makes at each pair's second half
    exactly that cell's last plaintext block (the first half, chained to the
    previous pair, is ignored). That block holds all of PKCS#7's padding.
    """
    positions: list[int] = []
    for index, (key, pairs) in enumerate(zip(encryption_keys, last_pairs, strict=True)):
        if not pairs:
            continue
        plain = Cipher(algorithms.AES(key), modes.CBC(bytes(_BLOCK))).decryptor().update(pairs)
        broken = _broken_paddings(plain)
        if broken:
            of_key = [at for at, k in enumerate(key_of) if k == index]
            positions += [of_key[cell] for cell in broken]
    return sorted(positions)


def _broken_paddings(plain: bytes) -> list[int]:
    """Which of the 32-byte pairs' last blocks do not end in a PKCS#7 padding.

    ``padding.PKCS7(128).unpadder()``'s rule (the last byte n is 1 to 16 and the
    last n bytes all equal n), judged for a whole batch at once: byte columns
    taken by stepped slices and compared as integers, one byte per cell, so a
    batch costs 16 C-level passes and no Python step per cell. The tests pin
    this to ``cryptography.fernet.Fernet.decrypt``.
    """
    stride = 2 * _BLOCK
    lengths = plain[stride - 1::stride]
    as_int = int.from_bytes
    wrong = as_int(lengths.translate(_NOT_A_PADDING_LENGTH), "big")
    length = as_int(lengths, "big")
    for back in range(1, _BLOCK):
        # Byte `back` before the last must equal the length wherever the padding covers it.
        column = as_int(plain[stride - 1 - back::stride], "big")
        wrong |= (column ^ length) & as_int(lengths.translate(_COVERS[back]), "big")
    if not wrong:
        return []
    return [cell for cell, byte in enumerate(wrong.to_bytes(len(lengths), "big")) if byte]


def _hmac_pads(key: bytes) -> tuple[Any, Any]:
    """HMAC-SHA256 (RFC 2104) with the key's inner and outer blocks hashed once.

    Copying a hash state that has already absorbed ``key XOR ipad`` (and
    ``key XOR opad``) saves two of the four compressions of a short token's HMAC
    and OpenSSL's per-call set-up, which ``hmac.digest`` pays every time.
    """
    block = key.ljust(64, b"\0")
    return (hashlib.sha256(bytes(b ^ 0x36 for b in block)),
            hashlib.sha256(bytes(b ^ 0x5C for b in block)))
