"""A table's COPY blocks searched whole (SecretSweep.scan_copy_rows) find exactly what a search
of each value's text alone finds, named by column, row and byte in the value, however the
values are escaped and the blocks cut; and parts searched apart merge into one report."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.sweep import SecretSweep, SweepHit, SweepReport

_OUT = {0x5C: b"\\\\", 0x08: b"\\b", 0x0C: b"\\f", 0x0A: b"\\n", 0x0D: b"\\r", 0x09: b"\\t",
        0x0B: b"\\v"}
NEEDLES = [(b"s3cret", "n1"), (b"cret\\n", "n2"), (b"et\tab", "tab inside"),
           (b"t\nx", "newline inside"), (b"\\\\", "escaped backslash"), (b"\\N", "NULL text")]


def _escaped(value: bytes | None) -> bytes:
    """What PostgreSQL's CopyAttributeOutText writes for a value (NULL as \\N)."""
    return b"\\N" if value is None else b"".join(_OUT.get(b, bytes([b])) for b in value)


VALUE = st.one_of(st.none(), st.lists(st.sampled_from(
    [b"s3cret", b"\t", b"\n", b"\\", b"ab", b"x", b"cret", b"et", b"N"]), max_size=5).map(b"".join))


@settings(max_examples=300, deadline=None)
@given(width=st.integers(1, 4), data=st.data())
def test_blocks_searched_whole_find_each_fields_own_occurrences(width: int,
                                                                data: st.DataObject) -> None:
    # Given rows (a key, then values with needles, escapes and NULLs), as the server writes them,
    # in blocks cut at any line
    rows = [[str(key).encode(), *data.draw(st.lists(VALUE, min_size=width, max_size=width))]
            for key in range(data.draw(st.integers(0, 12)))]
    lines = [b"\t".join(_escaped(v) for v in row) + b"\n" for row in rows]
    cuts = sorted(data.draw(st.lists(st.integers(0, len(lines)), max_size=4)))
    blocks = [b"".join(lines[a:b]) for a, b in zip([0, *cuts], [*cuts, len(lines)], strict=True)]
    sweep = SecretSweep(NEEDLES)
    locations = ["postgres:t.id", *(f"postgres:t.c{i}" if i % 2 else None for i in range(width))]
    # When each block is searched whole
    found = [hit for block in blocks for hit in sweep.scan_copy_rows(block, locations)]
    # Then the hits are each searched field's own, at their byte in its text, in stream order
    expected = [SweepHit(h.label, location, h.offset, row[0].decode())
                for row in rows for value, location in zip(row, locations, strict=True)
                if location is not None
                for h in sweep.scan_bytes(_escaped(value), location)]
    assert found == expected


def test_a_raw_tab_or_newline_in_a_needle_never_matches_across_fields() -> None:
    sweep = SecretSweep([(b"a\tb", "tab"), (b"a\nb", "newline"), (b"ab", "plain")])
    block = b"1\ta\tb\n2\ta\\tb\tab\n3\ta\nb\tz\n"
    hits = list(sweep.scan_copy_rows(block, ["postgres:t.id", "postgres:t.x", "postgres:t.y"]))
    assert [(h.label, h.location, h.row, h.offset) for h in hits] == [
        ("plain", "postgres:t.y", "2", 0)]
    assert hits[0].describe() == "plain at postgres:t.y row 2, byte 0"


def test_a_line_wider_than_its_locations_is_refused_on_a_hit() -> None:
    with pytest.raises(ValueError, match="more than 2 fields"):
        list(SecretSweep([(b"ab", "n")]).scan_copy_rows(b"1\tx\tab\n", ["a", "b"]))


def test_parts_merge_in_order_up_to_the_hit_limit() -> None:
    # Given two parts of 3 hits each, and a sweep that keeps 4
    sweep = SecretSweep([(b"ab", "n")], hit_limit=4)
    parts = []
    for key in (1, 2):
        part = SweepReport()
        sweep.record(part, sweep.scan_copy_rows(f"{key}\tababab\n".encode(), [None, "t.c"]))
        part.bytes_scanned = 10
        parts.append(part)
    report = SweepReport(locations=1)
    for part in parts:
        sweep.absorb(report, part)
    # Then every hit is counted, the first four kept in order, the bytes summed
    assert (report.hits_total, report.bytes_scanned, report.locations) == (6, 20, 1)
    assert [(h.row, h.offset) for h in report.hits] == [("1", 0), ("1", 2), ("1", 4), ("2", 0)]
