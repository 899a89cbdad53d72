"""COPY text lines read back into fields: the server's escaping undone exactly."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from harness.formats.copy_text import (
    copy_text_escaped,
    copy_text_rows,
    field_at,
    first_field,
    first_fields_bytes,
)

_OUT = {0x5C: b"\\\\", 0x08: b"\\b", 0x0C: b"\\f", 0x0A: b"\\n", 0x0D: b"\\r", 0x09: b"\\t",
        0x0B: b"\\v"}


def _server_escaped(value: bytes | None) -> bytes:
    """What PostgreSQL's CopyAttributeOutText writes for a value (NULL as \\N)."""
    if value is None:
        return b"\\N"
    return b"".join(_OUT.get(byte, bytes([byte])) for byte in value)


@given(st.lists(st.lists(st.one_of(st.none(), st.binary(max_size=20).filter(lambda b: b"\0" not in b)),
                         min_size=1, max_size=4), max_size=30))
def test_server_output_reads_back_as_the_values(rows: list[list[bytes | None]]) -> None:
    # Rows of one width, as one COPY gives.
    width = len(rows[0]) if rows else 1
    rows = [(row + [b""] * width)[:width] for row in rows]
    block = b"".join(b"\t".join(_server_escaped(v) for v in row) + b"\n" for row in rows)
    assert copy_text_rows(block) == rows


def test_a_block_without_backslash_is_split_as_it_is() -> None:
    assert copy_text_rows(b"1\tgAAAA==\t\n2\tx\ty\n") == [[b"1", b"gAAAA==", b""],
                                                        [b"2", b"x", b"y"]]
    assert copy_text_rows(b"") == []


@given(st.lists(st.lists(st.one_of(st.none(), st.binary(max_size=8)), min_size=1, max_size=4),
                min_size=1, max_size=6), st.data())
def test_a_span_is_placed_in_its_field_or_refused_across_a_separator(
        rows: list[list[bytes | None]], data: st.DataObject) -> None:
    # Given server output of rows of one width, and any span of it
    width = len(rows[0])
    rows = [(row + [b""] * width)[:width] for row in rows]
    fields = [[_server_escaped(v) for v in row] for row in rows]
    block = b"".join(b"\t".join(row) + b"\n" for row in fields)
    start = data.draw(st.integers(0, len(block) - 1))
    end = data.draw(st.integers(start + 1, len(block)))
    # When it is placed
    place = field_at(block, start, end)
    # Then it is None exactly when it holds a separator, else the field that holds it
    spans = [(line_at, column, field_start, field_start + len(text))
             for line_at, column, field_start, text in _fields(fields)]
    holding = [(line, column, field) for line, column, field, stop in spans
               if field <= start and end <= stop]
    assert place == (holding[0] if holding else None)
    assert (place is None) == (b"\t" in block[start:end] or b"\n" in block[start:end])
    if place is not None:
        assert first_field(block, place[0]) == fields[block.count(b"\n", 0, place[0])][0]


def _fields(rows: list[list[bytes]]) -> list[tuple[int, int, int, bytes]]:
    """(line start, column, field start, text) of every field of ``rows`` written as lines."""
    found, at = [], 0
    for row in rows:
        line = at
        for column, text in enumerate(row):
            found.append((line, column, at, text))
            at += len(text) + 1
    return found


def test_first_fields_bytes_are_each_lines_locator_and_its_tab() -> None:
    assert first_fields_bytes(b"(0,1)\tabc\t\\N\n(12,345)\t\n") == len(b"(0,1)\t(12,345)\t")
    assert first_fields_bytes(b"") == 0
    assert first_field(b"42\n7\tx\n", 3) == b"7" and first_field(b"42", 0) == b"42"


@given(st.binary(max_size=64))
def test_a_value_escaped_as_copy_writes_it_reads_back_as_itself(value: bytes) -> None:
    escaped = copy_text_escaped(value)
    assert b"\t" not in escaped and b"\n" not in escaped
    assert copy_text_rows(b"7\t" + escaped + b"\n") == [[b"7", value]]
