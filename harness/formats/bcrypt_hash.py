"""Stored password hashes: is this a bcrypt hash, with which cost, and if not, what is it?

The page promises bcrypt with work factor 12 for passwords and bcrypt for MFA
backup codes and recovery tokens. :func:`parse_bcrypt_hash` reads the modular
crypt format ``$2b$12$`` + 22-character salt + 31-character digest in the
bcrypt alphabet; :func:`classify_stored_hash` names whatever else a column
holds (argon2, md5-crypt, sha512-crypt, an unsalted hex digest, something that
looks like plaintext). Neither ever raises on odd input except with
:class:`BcryptHashError`; :func:`classify_stored_hash` never raises at all.
:func:`bcrypt_cost_histogram` answers for a whole batch of a column at once
when every value in it is well-formed bcrypt, which is what a column that
keeps the promise holds. :func:`match_codes_to_rows` pairs one-time codes with
the stored rows they verify against, with few bcrypt verifications.
"""

from __future__ import annotations

import enum
import re
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import bcrypt

from harness.formats import fernet_engine

#: The 64 characters bcrypt's own base64 uses (not the standard alphabet's order).
BCRYPT_ALPHABET = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
BCRYPT_VARIANTS = ("2a", "2b", "2y")
_BCRYPT = re.compile(r"\$(2[aby])\$(\d\d)\$([./A-Za-z0-9]{22})([./A-Za-z0-9]{31})")
#: A batch of well-formed bcrypt hashes, each followed by a newline. The cost is
#: two ASCII digits here (``\d`` would also take other scripts' digits, which
#: :func:`classify_stored_hash` must then judge itself).
_BCRYPT_LINES = re.compile(r"(?:\$2[aby]\$[0-9][0-9]\$[./A-Za-z0-9]{53}\n)*")
_BCRYPT_LINE_CHARS = 61
#: The same shape for PostgreSQL, so that a database can pick out the rows that are
#: not well-formed bcrypt without sending every value over: a value is one when
#: ``length(value) = BCRYPT_LENGTH AND value ~ BCRYPT_SQL_PATTERN`` (its cost is then
#: ``substr(value, 5, 2)``). The length is checked apart because PostgreSQL's
#: engine takes 5 times as long with ``{53}`` (13.9 s against 2.6 s for a million
#: values); its ``$`` matches only at the end of the text, so no newline can follow.
BCRYPT_SQL_PATTERN = r"^\$2[aby]\$[0-9][0-9]\$[./A-Za-z0-9]*$"
BCRYPT_LENGTH = 60
_HEX_DIGESTS = {32: "md5", 40: "sha1", 56: "sha224", 64: "sha256", 96: "sha384", 128: "sha512"}
_HEX = re.compile(r"[0-9a-fA-F]+")


class BcryptHashError(Exception):
    """A value is not a well-formed bcrypt hash.

    Attributes:
        scheme: what the value is instead (see :class:`HashScheme`).
        detail: one human sentence, without the value.
    """

    def __init__(self, scheme: HashScheme, detail: str) -> None:
        super().__init__(f"{scheme.value}: {detail}")
        self.scheme = scheme
        self.detail = detail


class HashScheme(enum.StrEnum):
    """What a stored password-hash value is.

    Attributes:
        BCRYPT: a well-formed bcrypt hash.
        MALFORMED_BCRYPT: starts like bcrypt but is not one (bad cost, length, alphabet).
        ARGON2: ``$argon2id$``/``$argon2i$``/``$argon2d$``.
        SCRYPT: ``$scrypt$`` or ``$7$``.
        YESCRYPT: ``$y$``.
        PBKDF2: ``$pbkdf2...`` or Django's ``pbkdf2_sha256$``.
        MD5_CRYPT: ``$1$`` or ``$apr1$``.
        SHA256_CRYPT: ``$5$``.
        SHA512_CRYPT: ``$6$``.
        UNSALTED_DIGEST: a bare hex digest (md5, sha1, sha256 ...).
        OTHER_CRYPT: some other ``$id$`` modular crypt string.
        PLAINTEXT_LIKE: text that is none of the above: likely the secret itself.
        MISSING: NULL or empty.
        NOT_TEXT: not str/bytes, or bytes that are not ASCII.
    """

    BCRYPT = "bcrypt"
    MALFORMED_BCRYPT = "malformed_bcrypt"
    ARGON2 = "argon2"
    SCRYPT = "scrypt"
    YESCRYPT = "yescrypt"
    PBKDF2 = "pbkdf2"
    MD5_CRYPT = "md5_crypt"
    SHA256_CRYPT = "sha256_crypt"
    SHA512_CRYPT = "sha512_crypt"
    UNSALTED_DIGEST = "unsalted_digest"
    OTHER_CRYPT = "other_crypt"
    PLAINTEXT_LIKE = "plaintext_like"
    MISSING = "missing"
    NOT_TEXT = "not_text"


_PREFIXES: tuple[tuple[str, HashScheme], ...] = (
    ("$argon2", HashScheme.ARGON2),
    ("$scrypt$", HashScheme.SCRYPT),
    ("$7$", HashScheme.SCRYPT),
    ("$y$", HashScheme.YESCRYPT),
    ("$pbkdf2", HashScheme.PBKDF2),
    ("pbkdf2_", HashScheme.PBKDF2),
    ("$1$", HashScheme.MD5_CRYPT),
    ("$apr1$", HashScheme.MD5_CRYPT),
    ("$5$", HashScheme.SHA256_CRYPT),
    ("$6$", HashScheme.SHA512_CRYPT),
)


@dataclass(frozen=True)
class BcryptHash:
    """The parts of a well-formed bcrypt hash.

    Attributes:
        variant: ``2a``, ``2b`` or ``2y``.
        cost: the work factor (log2 of the rounds), 4 to 31.
        salt: the 22-character salt.
        digest: the 31-character digest.
    """

    variant: str
    cost: int
    salt: str
    digest: str

    def text(self) -> str:
        """The modular crypt string again (parse → text is the identity)."""
        return f"${self.variant}${self.cost:02d}${self.salt}{self.digest}"


@dataclass(frozen=True)
class StoredHashKind:
    """What one stored value is, for a histogram over a column.

    Attributes:
        scheme: the scheme it was classified as.
        cost: the bcrypt cost when ``scheme`` is BCRYPT, else None.
        detail: why, in a few words (never the value).
    """

    scheme: HashScheme
    cost: int | None = None
    detail: str = ""


def _as_text(value: object) -> str:
    if value is None:
        raise BcryptHashError(HashScheme.MISSING, "the value is NULL")
    if isinstance(value, bytes | bytearray | memoryview):
        try:
            value = bytes(value).decode("ascii")
        except UnicodeDecodeError:
            raise BcryptHashError(HashScheme.NOT_TEXT, "the value is not ASCII text") from None
    if not isinstance(value, str):
        raise BcryptHashError(HashScheme.NOT_TEXT, f"the value is a {type(value).__name__}")
    if not value:
        raise BcryptHashError(HashScheme.MISSING, "the value is empty")
    return value


def parse_bcrypt_hash(value: object) -> BcryptHash:
    """Read a bcrypt hash.

    Raises:
        BcryptHashError: with the scheme the value is instead (see :func:`classify_stored_hash`).
    """
    text = _as_text(value)
    match = _BCRYPT.fullmatch(text)
    if match is None:
        kind = classify_stored_hash(text)
        raise BcryptHashError(kind.scheme, kind.detail or "not a bcrypt hash")
    cost = int(match.group(2))
    if not 4 <= cost <= 31:
        raise BcryptHashError(HashScheme.MALFORMED_BCRYPT, f"cost {cost} is outside 4..31")
    return BcryptHash(match.group(1), cost, match.group(3), match.group(4))


def classify_stored_hash(value: object) -> StoredHashKind:
    """Name what a stored value is. Never raises."""
    try:
        text = _as_text(value)
    except BcryptHashError as error:
        return StoredHashKind(error.scheme, detail=error.detail)
    match = _BCRYPT.fullmatch(text)
    if match is not None:
        cost = int(match.group(2))
        if 4 <= cost <= 31:
            return StoredHashKind(HashScheme.BCRYPT, cost, f"${match.group(1)}$ cost {cost}")
        return StoredHashKind(HashScheme.MALFORMED_BCRYPT, detail=f"cost {cost} is outside 4..31")
    if text.startswith("$2"):
        return StoredHashKind(HashScheme.MALFORMED_BCRYPT,
                              detail=f"starts like bcrypt but is {len(text)} characters, "
                                     "not 60 in the bcrypt alphabet")
    for prefix, scheme in _PREFIXES:
        if text.startswith(prefix):
            return StoredHashKind(scheme, detail=f"prefix {prefix}")
    if len(text) in _HEX_DIGESTS and _HEX.fullmatch(text):
        return StoredHashKind(HashScheme.UNSALTED_DIGEST,
                              detail=f"{len(text)} hex digits ({_HEX_DIGESTS[len(text)]}-sized)")
    if text.startswith("$") and text.count("$") >= 2:
        return StoredHashKind(HashScheme.OTHER_CRYPT, detail="an unknown $id$ crypt string")
    return StoredHashKind(HashScheme.PLAINTEXT_LIKE, detail=f"{len(text)} characters of plain text")


def bcrypt_cost_histogram(values: Sequence[object]) -> dict[int, int] | None:
    """Cost → number of values, if every value is a well-formed bcrypt hash; else None.

    One regular expression over the batch joined by newlines, instead of one
    classification per value: with the length of the joined text exactly 61
    characters per value, a match of nothing but ``hash\\n`` lines leaves no
    room for a value holding a newline, so the lines are the values. None says
    only "not all of them": :func:`classify_stored_hash` then says, value by
    value, which and why, exactly as it would have.
    """
    count = len(values)
    if not count:
        return {}
    try:
        text = "\n".join(values) + "\n"  # type: ignore[arg-type]
    except TypeError:
        return None
    if len(text) != _BCRYPT_LINE_CHARS * count or _BCRYPT_LINES.fullmatch(text) is None:
        return None
    tens, ones = text[4::_BCRYPT_LINE_CHARS], text[5::_BCRYPT_LINE_CHARS]
    if tens == tens[0] * count and ones == ones[0] * count:
        costs = {int(tens[0] + ones[0]): count}
    else:
        costs = dict(Counter(int(a + b) for a, b in zip(tens, ones, strict=True)))
    if any(not 4 <= cost <= 31 for cost in costs):
        return None
    return costs


#: The bytes of the bcrypt alphabet, and what is left of a well-formed ``hash\n`` line without
#: them: the three ``$`` and the newline (``2``, the variant letter and the cost digits are in it).
_ALPHABET_BYTES = BCRYPT_ALPHABET.encode("ascii")
_LINE_REST = b"$$$\n"


def bcrypt_lines_costs(lines: bytes, count: int) -> dict[int, int] | None:
    """Cost → number of values, if ``lines`` is ``count`` well-formed bcrypt hashes as ASCII,
    each followed by a newline; else None (then nothing is said of any value).

    What :func:`bcrypt_cost_histogram` says of the same values as text, at a fraction of its
    cost (0.06 s of CPU for a million hashes against 0.2 s): the length is 61 bytes a value,
    the bytes outside the alphabet are exactly ``$``, ``$``, ``$`` and the newline of each
    line and stand at offsets 0, 3, 6 and 60 of it, offsets 1 and 2 are ``2`` and ``a``,
    ``b`` or ``y``, 4 and 5 ASCII digits of a cost from 4 to 31. With the ``count``
    newlines at the lines' ends, no value can hold one, so the lines are the values.
    Only ASCII is accepted: a value :func:`classify_stored_hash` might still call bcrypt
    (a cost in other scripts' digits) is left to it (None).
    """
    if count <= 0 or len(lines) != _BCRYPT_LINE_CHARS * count:
        return {} if count == 0 and not lines else None
    step = _BCRYPT_LINE_CHARS
    if lines.translate(None, _ALPHABET_BYTES) != _LINE_REST * count:
        return None
    dollars = b"$" * count
    if (lines[0::step] != dollars or lines[3::step] != dollars or lines[6::step] != dollars
            or lines[60::step] != b"\n" * count or lines[1::step] != b"2" * count
            or lines[2::step].translate(None, b"aby")):
        return None
    tens, ones = lines[4::step], lines[5::step]
    if not (tens.isdigit() and ones.isdigit()):
        return None
    if tens == tens[:1] * count and ones == ones[:1] * count:
        costs = {int(tens[:1] + ones[:1]): count}
    else:
        costs = dict(Counter(int(pair) for pair in map(bytes, zip(tens, ones, strict=True))))
    if any(not 4 <= cost <= 31 for cost in costs):
        return None
    return costs


#: What :func:`lines_classifier` hands out: :func:`bcrypt_lines_costs`, or its native twin.
LinesCosts = Callable[[bytes, int], "dict[int, int] | None"]


def lines_classifier() -> tuple[LinesCosts, str]:
    """The :func:`bcrypt_lines_costs` to judge joined chunks with, and its engine's name for the
    evidence: the native engine's (``votriz_fernet_native``, the same answer on any bytes, a
    differential test holds them together; 0.011 s of CPU for a million hashes against 0.033 s,
    the GIL released) where it is installed and fresh, else this module's (``python``). Asked
    once a scan: finding the native module hashes its crate's sources."""
    native = fernet_engine.native_module()
    if native is None:
        return bcrypt_lines_costs, fernet_engine.engine_name()
    return native.bcrypt_lines_costs, fernet_engine.NATIVE


class HashMatch(enum.StrEnum):
    """The answer of one bcrypt verification.

    Attributes:
        MATCH: the secret hashes to the stored value.
        NO_MATCH: it does not.
        NOT_BCRYPT: the stored value is not a bcrypt hash, so nothing was verified.
        SECRET_TOO_LONG: the secret is over 72 bytes, which bcrypt cannot take.
    """

    MATCH = "match"
    NO_MATCH = "no_match"
    NOT_BCRYPT = "not_bcrypt"
    SECRET_TOO_LONG = "secret_too_long"


def bcrypt_check(secret: str | bytes, stored: object) -> HashMatch:
    """Verify ``secret`` against a stored bcrypt hash (one bcrypt computation at its cost)."""
    try:
        parsed = parse_bcrypt_hash(stored)
    except BcryptHashError:
        return HashMatch.NOT_BCRYPT
    data = secret.encode() if isinstance(secret, str) else secret
    if len(data) > 72:
        return HashMatch.SECRET_TOO_LONG
    try:
        matched = bcrypt.checkpw(data, parsed.text().encode("ascii"))
    except ValueError:
        return HashMatch.NOT_BCRYPT
    return HashMatch.MATCH if matched else HashMatch.NO_MATCH


@dataclass(frozen=True)
class CodeMatching:
    """Which stored row each backup code verifies against.

    Attributes:
        pairs: (code number, row id) for each code that matched a distinct row.
        unmatched_codes: numbers (1-based) of codes that matched no row.
        unmatched_rows: ids of rows no code matched.
        verifications: bcrypt verifications spent.
    """

    pairs: tuple[tuple[int, int], ...]
    unmatched_codes: tuple[int, ...]
    unmatched_rows: tuple[int, ...]
    verifications: int


def match_codes_to_rows(codes: Sequence[str], rows: Sequence[tuple[int, Any]], *,
                        check: Callable[[str, Any], HashMatch] = bcrypt_check,
                        workers: int = 2) -> CodeMatching:
    """Pair each code with the one row it verifies against, with few bcrypt verifications.

    A bcrypt check costs about 0.25 s at cost 12, so trying every pair (100) is
    too slow. Services store codes in the order they hand them out, so code *i*
    is first tried against the *i*-th row by id, all ten in parallel (bcrypt
    releases the GIL); only codes that miss are tried against the rows still
    unmatched, stopping at the first match. In order this costs 10 checks; in
    the worst case (reversed order) 10 + 50, still fewer than the 100 pairs. A
    row matched by one code is never tried again: a
    bcrypt hash that verifies two different codes would be a collision.
    """
    ordered = sorted(rows, key=lambda r: r[0])
    verifications = 0
    matched: dict[int, int] = {}
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        diagonal = list(range(min(len(codes), len(ordered))))
        answers = list(pool.map(lambda i: check(codes[i], ordered[i][1]), diagonal))
        verifications += len(diagonal)
        for i, answer in zip(diagonal, answers, strict=True):
            if answer is HashMatch.MATCH:
                matched[i] = ordered[i][0]
    taken = set(matched.values())
    for i, code in enumerate(codes):
        if i in matched:
            continue
        for j, (row_id, stored) in enumerate(ordered):
            if row_id in taken or j == i:
                continue
            verifications += 1
            if check(code, stored) is HashMatch.MATCH:
                matched[i] = row_id
                taken.add(row_id)
                break
    return CodeMatching(
        pairs=tuple(sorted((i + 1, r) for i, r in matched.items())),
        unmatched_codes=tuple(i + 1 for i in range(len(codes)) if i not in matched),
        unmatched_rows=tuple(r for r, _ in ordered if r not in taken),
        verifications=verifications)
