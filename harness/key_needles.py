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
#: where they are the whole value given to a name that says it is a secret: an environment
#: variable or an assignment on a line of text (``SOFTHSM_USER_PIN=4821``, ``pin: "4821"``).
MIN_SHORT_BYTES = 4
_SECRET_NAME = re.compile(rb"(?i)pin|pass|secret|key|token|cred|auth")
_NAME_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")


def _assigned_name(data: bytes, start: int) -> bytes:
    """The name a value starting at ``start`` is given to (``NAME=``, ``name: "``), else b"".

    Read backwards over a bounded stretch, so that a value found many times costs little."""
    i = start
    if i and data[i - 1] in b"\"'":
        i -= 1
    while i and data[i - 1] in b" \t":
        i -= 1
    if not i or data[i - 1] not in b":=":
        return b""
    i -= 1
    while i and data[i - 1] in b" \t":
        i -= 1
    if i and data[i - 1] in b"\"'":
        i -= 1
    j = i
    while j > max(0, i - 100) and data[j - 1] in _NAME_BYTES:
        j -= 1
    return data[j:i]


#: What may follow it up to the end of its line.
_VALUE_END = re.compile(rb"""["']?[ \t]*[,;]?[ \t]*(?:\r?\n|\Z)""")


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
    """(start, end, label) of each short form in ``data`` given whole to a secret's name."""
    for needle, label in short.items():
        start = data.find(needle)
        while start >= 0:
            end = start + len(needle)
            if _VALUE_END.match(data, end) and _SECRET_NAME.search(_assigned_name(data, start)):
                yield start, end, label
            start = data.find(needle, end)
