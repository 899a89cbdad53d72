"""What the key search looks for: every encoded form of the real keys, and the short ones
(a PIN of 4 or 5 digits) where a secret's name is given them whole.

Forms of 6 bytes or more are searched for wherever they are
(:func:`value_needles`, for the sweep's automaton). Shorter forms are in
every file by chance (a port, a count, a year), so they are found only as the
whole value of an assignment to a name that says it is a secret
(:func:`short_assignments`): ``SOFTHSM_USER_PIN=4821`` in an environment,
``pin: "4821"`` on a line of text.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping

from harness.redaction import encodings


def shannon_entropy(text: bytes) -> float:
    """Bits per character of ``text`` (0 for empty input)."""
    if not text:
        return 0.0
    counts = Counter(text)
    total = len(text)
    return -sum(n / total * math.log2(n / total) for n in counts.values())


def is_mixed(text: bytes) -> bool:
    """Whether ``text`` holds a digit, an upper-case and a lower-case letter."""
    return (any(48 <= b <= 57 for b in text) and any(65 <= b <= 90 for b in text)
            and any(97 <= b <= 122 for b in text))


#: Encoded forms at least this long are searched for wherever they are.
MIN_NEEDLE_BYTES = 6
#: Shorter forms (a PIN of 4 or 5 digits) are in every file by chance, so they are found only
#: where they are the whole value given to a name whose last word names a secret: an
#: environment variable or an assignment in a line of text (``SOFTHSM_USER_PIN=4821``,
#: ``pin: "4821"``, ``{"pin": "4821"}``, ``--pin 4821``). ``max_tokens = 4821``, ``monkey=4821``
#: or ``port = 4821`` are not.
MIN_SHORT_BYTES = 4
#: The most short hits one buffer yields.
MAX_SHORT_HITS = 1000
#: Last words of a name that say it holds a secret (a 4- or 5-byte key is no key: PINs and
#: passwords are what is that short).
SECRET_WORDS = frozenset({b"pin", b"pins", b"pass", b"password", b"passwd", b"passphrase", b"pwd",
                          b"secret", b"token", b"credential", b"userpin", b"sopin", b"pincode",
                          b"passcode"})
#: Words that name a secret after one of these (``PIN_CODE``, ``passCode``).
_CODE_OF = frozenset({b"pin", b"pass"})
_NAME_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
#: What may stand right after a value given whole: its closing quote, then the end of the
#: value (space, a separator, a bracket, a comment, the end of the line or of the data).
_QUOTES = b"\"'"
_VALUE_ENDS = b" \t\r\n,;}])#&\\"
_WORDS = re.compile(rb"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|[0-9]+")


def _name_before(data: bytes, end: int) -> bytes:
    start = end
    while start > max(0, end - 100) and data[start - 1] in _NAME_BYTES:
        start -= 1
    return data[start:end]


def _blanks_before(data: bytes, end: int) -> int:
    """Where a run of at most 16 blanks ending at ``end`` starts."""
    start = end
    while start and end - start < 16 and data[start - 1] in b" \t":
        start -= 1
    return start


def _assigned_name(data: bytes, start: int) -> bytes:
    """The name a value starting at ``start`` is given to (``NAME=``, ``name: "``, ``--name ``),
    else b"". Read backwards over at most ~140 bytes, so a value found often costs little."""
    quoted = bool(start) and data[start - 1] in _QUOTES
    i = start - quoted
    if quoted and i and data[i - 1] == 0x5C:
        # An escaped quote, as a JSON log line writes one (``"msg":"pin=\\"4821\\""``).
        i -= 1
    before_blanks = _blanks_before(data, i)
    if before_blanks and data[before_blanks - 1] in b":=":
        i = _blanks_before(data, before_blanks - 1)
        if i and data[i - 1] in _QUOTES:
            i -= 1
        return _name_before(data, i)
    # No ``:`` or ``=``: only a command-line flag (``--pin 4821``) or a Dockerfile's ``ENV NAME
    # value`` gives a value after a blank.
    flag = _name_before(data, before_blanks) if before_blanks < i else b""
    if flag.startswith(b"-"):
        return flag
    env = before_blanks - len(flag)
    dockerfile = env >= 4 and data[env - 4:env] == b"ENV " and (env == 4 or data[env - 5] in b"\n\r \t")
    return flag if flag and dockerfile else b""


def names_a_secret(name: bytes) -> bool:
    """Whether the last word of ``name`` (``SOFTHSM_USER_PIN``, ``userPin``, ``db.password``)
    says it holds a secret."""
    words = [word.lower() for word in _WORDS.findall(name)]
    while words and words[-1].isdigit():
        # ``PIN1``, ``SO_PIN_2``: a numbered secret is a secret.
        words.pop()
    if len(words) >= 2 and words[-1] == b"code" and words[-2] in _CODE_OF:
        return True
    return bool(words) and words[-1] in SECRET_WORDS


def _ends_whole(data: bytes, end: int) -> bool:
    """Whether a value ending at ``end`` ends there: a closing quote at most, then its end."""
    if end < len(data) and data[end] in _QUOTES:
        end += 1
    return end == len(data) or data[end] in _VALUE_ENDS


def value_needles(values: Iterable[tuple[str, bytes]]) -> list[tuple[bytes, str]]:
    """Every encoded form of every key value, labelled ``LABEL (form)``."""
    needles: dict[bytes, str] = {}
    for label, value in values:
        for form, encoded in encodings(value):
            if len(encoded) >= MIN_NEEDLE_BYTES:
                needles.setdefault(encoded, f"{label} ({form})")
    return list(needles.items())


def short_needles(values: Iterable[tuple[str, bytes]]) -> dict[bytes, str]:
    """The forms of 4 or 5 bytes, labelled as :func:`value_needles` labels the rest."""
    short: dict[bytes, str] = {}
    for label, value in values:
        for form, encoded in encodings(value):
            if MIN_SHORT_BYTES <= len(encoded) < MIN_NEEDLE_BYTES:
                short.setdefault(encoded, f"{label} ({form})")
    return short


def short_assignments(data: bytes, short: Mapping[bytes, str]) -> Iterator[tuple[int, int, str]]:
    """(start, end, label) of each short form in ``data`` given whole to a secret's name, at
    most :data:`MAX_SHORT_HITS` of them; each occurrence costs a bounded look around it."""
    found = 0
    for needle, label in short.items():
        start = data.find(needle)
        while start >= 0 and found < MAX_SHORT_HITS:
            end = start + len(needle)
            whole = (start == 0 or data[start - 1] not in _NAME_BYTES) and _ends_whole(data, end)
            if whole and names_a_secret(_assigned_name(data, start)):
                found += 1
                yield start, end, label
            start = data.find(needle, end)
