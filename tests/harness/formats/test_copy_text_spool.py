"""A table's COPY split into a spool per column: each column's text exactly as a COPY of that
column alone writes it, whatever the values and however the blocks are cut."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.formats.copy_text import spool_columns, spooled

_OUT = {0x5C: b"\\\\", 0x08: b"\\b", 0x0C: b"\\f", 0x0A: b"\\n", 0x0D: b"\\r", 0x09: b"\\t",
        0x0B: b"\\v"}


def _escaped(value: bytes | None) -> bytes:
    """What PostgreSQL's CopyAttributeOutText writes for a value (NULL as \\N)."""
    return b"\\N" if value is None else b"".join(_OUT.get(b, bytes([b])) for b in value)


@given(width=st.integers(1, 5), data=st.data())
def test_each_spool_is_its_column_alone(width: int, data: st.DataObject) -> None:
    # Given rows of any values, escaped as the server does, in blocks cut at any line
    value = st.one_of(st.none(), st.binary(max_size=12).filter(lambda b: b"\0" not in b))
    rows = data.draw(st.lists(st.lists(value, min_size=width, max_size=width), max_size=25))
    lines = [b"\t".join(_escaped(v) for v in row) + b"\n" for row in rows]
    cuts = sorted(data.draw(st.lists(st.integers(0, len(lines)), max_size=4)))
    blocks = [b"".join(lines[a:b]) for a, b in zip([0, *cuts], [*cuts, len(lines)], strict=True)]
    # When the table's blocks are spooled per column
    texts = [b"".join(spooled(spool)) for spool in spool_columns(blocks, width)]
    # Then each column's text is that column's fields, one a line, as COPY writes them
    assert texts == [b"".join(_escaped(row[at]) + b"\n" for row in rows) for at in range(width)]


@pytest.mark.parametrize("block", [b"1\t2\n3\n", b"1\t2\n3\t4", b"1\t2\t3\n"])
def test_a_block_that_is_not_whole_lines_of_the_width_is_refused(block: bytes) -> None:
    with pytest.raises(ValueError, match="not whole lines of 2 fields"):
        spool_columns([b"0\t0\n", block], 2)
