"""COPY text lines read back into fields: the server's escaping undone exactly."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from harness.formats.copy_text import copy_text_rows, spool_columns, spooled

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


def test_columns_spooled_are_each_column_alone_across_blocks() -> None:
    rows = [[b"1", b"a\\tb", b"\\N"], [b"2", b"", b"x" * 3_000_000], [b"3", b"c", b"d"]]
    blocks = [b"\t".join(rows[0]) + b"\n", b"".join(b"\t".join(r) + b"\n" for r in rows[1:])]
    spools = spool_columns(blocks, 3)
    texts = [b"".join(spooled(spool)) for spool in spools]
    assert texts == [b"".join(r[i] + b"\n" for r in rows) for i in range(3)]
    assert all(spool.closed for spool in spools)
    pieces = list(spooled(spool_columns(blocks, 3)[2]))
    assert all(piece.endswith(b"\n") for piece in pieces) and len(pieces) >= 2
