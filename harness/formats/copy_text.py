"""PostgreSQL's ``COPY ... TO STDOUT`` text format, read back into fields.

The server writes one row a line, fields separated by a tab; a NULL is ``\\N``,
and in a value only the backslash and the control characters backspace, form
feed, newline, carriage return, tab and vertical tab are escaped (as ``\\\\``,
``\\b``, ``\\f``, ``\\n``, ``\\r``, ``\\t``, ``\\v``; PostgreSQL's
``CopyAttributeOutText``). So a line without a backslash is its fields as
stored, split at the tabs, and only a line with one needs its fields read
escape by escape. Whole blocks are split at C speed; a block of tokens or
hashes (no backslash anywhere) costs one ``split`` per row.
"""

from __future__ import annotations

import re

_ESCAPES = {b"\\": b"\\", b"b": b"\b", b"f": b"\f", b"n": b"\n", b"r": b"\r", b"t": b"\t",
            b"v": b"\v"}
_ESCAPE = re.compile(rb"\\(.)", re.DOTALL)

Field = bytes | None

#: How ``COPY ... TO STDOUT`` writes a value's backslash and control characters.
_OUT_ESCAPES = {ord(raw): b"\\" + letter for letter, raw in _ESCAPES.items()}


def copy_text_escaped(value: bytes) -> bytes:
    """``value`` as the server writes it inside a ``COPY`` text field (the inverse of the
    field reading below): a backslash as ``\\\\``, a tab as ``\\t``, and so on."""
    if not any(raw in value for raw in _OUT_ESCAPES):
        return value
    return b"".join(_OUT_ESCAPES.get(byte, bytes((byte,))) for byte in value)


def _unescaped(field: bytes) -> Field:
    if field == b"\\N":
        return None
    # Anything else after a backslash stands for itself (COPY FROM's rule; the server never
    # writes one, the octal and hexadecimal forms included).
    return _ESCAPE.sub(lambda m: _ESCAPES.get(m.group(1), m.group(1)), field)


def copy_text_rows(block: bytes) -> list[list[Field]]:
    """The rows of a block of whole COPY text lines, each a list of its fields (bytes, or None
    for NULL). Never raises on well-formed server output."""
    lines = block.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()
    if b"\\" not in block:
        return [line.split(b"\t") for line in lines]  # type: ignore[misc]
    return [[_unescaped(f) for f in line.split(b"\t")] if b"\\" in line
            else line.split(b"\t") for line in lines]  # type: ignore[misc]


def field_at(block: bytes, start: int, end: int) -> tuple[int, int, int] | None:
    """Where ``block[start:end]`` lies in a block of whole COPY text lines: ``(its line's
    start, its field's index on the line, its field's start)``, or None when it crosses a
    field's end (holds a tab or a newline), which no value's text can (``COPY`` escapes them).

    A few ``find``/``count`` calls over the one line, at C speed: meant for the rare span a
    search hit, so that a block is searched whole, never split into its fields first.
    """
    if block.find(b"\t", start, end) >= 0 or block.find(b"\n", start, end) >= 0:
        return None
    line = block.rfind(b"\n", 0, start) + 1
    tab = block.rfind(b"\t", line, start)
    return line, block.count(b"\t", line, start), line if tab < 0 else tab + 1


def first_field(block: bytes, line: int) -> bytes:
    """The first field of the line starting at ``line``, as ``COPY`` wrote it (escaped)."""
    newline = block.find(b"\n", line)
    stop = len(block) if newline < 0 else newline
    tab = block.find(b"\t", line, stop)
    return block[line:stop if tab < 0 else tab]


_FIRST_FIELD = re.compile(rb"^[^\t\n]*\t", re.MULTILINE)


def first_fields_bytes(block: bytes) -> int:
    """The bytes of every line's first field and the tab after it (a row's locator that is
    not itself searched, such as its ``ctid``): one regular-expression pass over the block."""
    return len(block) - len(_FIRST_FIELD.sub(b"", block))
