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
