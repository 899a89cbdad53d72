"""The plaintext sweep: every encoding, chunk boundaries, files, and never the secret in a hit."""

from __future__ import annotations

import base64
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import harness.sweep
from harness.redaction import KnownSecrets
from harness.sweep import NotRegularFile, SecretSweep, SweepReport, open_regular, secrets_in_text

SECRET = "canary-Pa55word/+=?&"


def _sweep() -> SecretSweep:
    known = KnownSecrets()
    known.add(SECRET, "canary password")
    known.add("canary+run1@audit.invalid", "canary e-mail")
    return SecretSweep.from_known(known)


def test_finds_every_encoding_and_never_shows_the_secret() -> None:
    raw = SECRET.encode()
    forms = {
        "raw": raw,
        "base64": base64.b64encode(raw).rstrip(b"="),
        "base64url": base64.urlsafe_b64encode(raw).rstrip(b"="),
        "hex": raw.hex().encode(),
        "HEX": raw.hex().upper().encode(),
    }
    sweep = _sweep()
    for form, encoded in forms.items():
        data = b"xx" + encoded + b"yy"
        hits = sweep.scan_bytes(data, "t.c")
        # Two forms can be the same bytes (base64 and base64url without + or /): one label then.
        assert any(h.label.startswith("canary password (") and h.offset == 2 for h in hits), form
        for hit in hits:
            assert SECRET not in hit.describe() and encoded.decode() not in hit.describe()


def test_nothing_in_clean_data() -> None:
    assert _sweep().scan_bytes(b"gAAAAABl" * 1000, "x") == []


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.binary(max_size=300), st.integers(1, 64),
       st.sampled_from([1, 16, 1 << 18]))
def test_chunk_boundaries_find_each_occurrence_once(before: bytes, after: bytes, size: int,
                                                    min_chunk: int) -> None:
    # Given a secret somewhere in a stream, when the stream arrives in chunks of
    # any size (searched as they come, or joined first), then it is found exactly
    # once at its true offset.
    data = before + SECRET.encode() + after
    whole = {(h.label, h.offset) for h in _sweep().scan_bytes(data, "s")}
    chunks = [data[i:i + size] for i in range(0, len(data), size)]
    streamed = [(h.label, h.offset)
                for h in _sweep().scan_stream(chunks, "s", min_chunk_bytes=min_chunk)]
    assert len(streamed) == len(set(streamed))
    assert set(streamed) == whole
    assert ("canary password (raw)", len(before)) in whole


def _every_occurrence(data: bytes, needles: list[tuple[bytes, str]]) -> list[tuple[int, int, str]]:
    """The reference answer: (end, -length, label) of every occurrence, by bytes.find."""
    found = []
    labels: dict[bytes, str] = {}
    for needle, label in needles:
        labels.setdefault(needle, label)
    for needle, label in labels.items():
        start = data.find(needle)
        while start >= 0:
            found.append((start + len(needle), -len(needle), label))
            start = data.find(needle, start + 1)
    return sorted(found)


NEEDLES = [(b"abcab", "n1"), (b"bca", "n2"), (b"cabcab", "n3"), (b"ab", "dup-ignored"),
           (b"ab", "n4"), (b"zzzzzz", "n5")]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([b"a", b"b", b"c", b"z", b"abcab", b"x"]), max_size=120),
       st.integers(1, 40), st.sampled_from([1, 1 << 18]))
def test_every_occurrence_also_overlapping_ones_in_stream_order(parts: list[bytes], size: int,
                                                                min_chunk: int) -> None:
    # Given needles that overlap and contain one another, when a stream is swept
    # in chunks, then every occurrence of every needle is reported once, in the
    # order of its last byte (longest first at the same byte), as bytes.find sees them.
    data = b"".join(parts)
    sweep = SecretSweep([(b"ab", "n4"), *NEEDLES])
    chunks = [data[i:i + size] for i in range(0, len(data), size)]
    hits = list(sweep.scan_stream(chunks, "s", min_chunk_bytes=min_chunk))
    expected = [(label, end + neg) for end, neg, label in _every_occurrence(data, [(b"ab", "n4"), *NEEDLES])]
    assert [(h.label, h.offset) for h in hits] == expected
    assert sweep.needle_count == 5 and sweep.longest == 6


def test_rows_of_a_copy_stream_are_joined_and_offsets_stay_true() -> None:
    # Given a column dumped one short row per chunk, with the secret in row 5000
    rows = [f"row-{i}\n".encode() for i in range(10_000)]
    rows[5000] = b"x" + SECRET.encode() + b"\n"
    offset = sum(len(r) for r in rows[:5000]) + 1
    # When it is swept, Then the secret is found once at its byte offset in the stream
    hits = list(_sweep().scan_stream(iter(rows), "postgres:t.c"))
    assert [(h.label, h.offset) for h in hits] == [("canary password (raw)", offset)]


def test_no_needles_finds_nothing() -> None:
    sweep = SecretSweep([])
    assert sweep.needle_count == 0 and sweep.scan_bytes(b"anything", "x") == []
    assert sweep.sweep([("blob", [b"abc"])]).bytes_scanned == 3


def test_sweep_files_reports_path_and_offset(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "api.log").write_bytes(b"a" * 5000 + b"password=" + SECRET.encode())
    (tmp_path / "clean.log").write_bytes(b"nothing here\n" * 100)
    (tmp_path / "link").symlink_to(tmp_path / "logs" / "api.log")
    report = _sweep().sweep_files([tmp_path], chunk_bytes=1000)
    assert report.locations == 2
    assert [(h.location.endswith("api.log"), h.offset) for h in report.hits] == [(True, 5009)]
    # The link inside is not followed, and it is said so: a gap, never a silent skip.
    assert report.unreadable == [f"{tmp_path / 'link'}: a symbolic link (not followed inside a "
                                 "searched directory)"]


def test_a_root_that_is_a_link_is_followed_once(tmp_path: Path) -> None:
    # Given log_dir -> real/ holding a secret, and the same tree named twice
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "api.log").write_bytes(b"password=" + SECRET.encode())
    (tmp_path / "log_dir").symlink_to(tmp_path / "real")
    (tmp_path / "one.log").symlink_to(tmp_path / "real" / "api.log")
    # When the link, its target and a link to the file are swept
    report = _sweep().sweep_files([tmp_path / "log_dir", tmp_path / "real", tmp_path / "one.log"])
    # Then the file is searched once, under its real path, and the secret found
    assert report.locations == 1 and report.unreadable == []
    assert [h.location for h in report.hits] == [str(tmp_path / "real" / "api.log")]


def test_special_files_and_links_inside_are_listed_with_their_kind(tmp_path: Path) -> None:
    import socket

    (tmp_path / "logs" / "sub").mkdir(parents=True)
    os.mkfifo(tmp_path / "logs" / "pipe")
    (tmp_path / "logs" / "sub" / "dirlink").symlink_to(tmp_path)
    (tmp_path / "logs" / "dangling").symlink_to(tmp_path / "absent")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(tmp_path / "logs" / "sock"))
    try:
        report = _sweep().sweep_files([tmp_path / "logs"])
    finally:
        server.close()
    assert report.locations == 0
    kinds = {line.split(": ", 1)[0].rsplit("/", 1)[1]: line.split(": ", 1)[1] for line in report.unreadable}
    assert kinds == {"dangling": "a symbolic link (not followed inside a searched directory)",
                     "dirlink": "a symbolic link (not followed inside a searched directory)",
                     "pipe": "a FIFO", "sock": "a socket"}


def test_a_root_that_is_a_device_or_fifo_is_a_gap(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    report = _sweep().sweep_files([tmp_path / "fifo", Path("/dev/null")])
    assert report.locations == 0
    assert report.unreadable == [f"{tmp_path / 'fifo'}: a FIFO, not a regular file",
                                 "/dev/null: a character device, not a regular file"]


def test_a_directory_loop_through_a_root_link_ends(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.log").write_bytes(b"x")
    (tmp_path / "root").symlink_to(tmp_path / "a")
    report = _sweep().sweep_files([tmp_path / "root", tmp_path / "a" / "x.log"])
    assert report.locations == 1 and report.unreadable == []


def test_missing_root_is_reported_not_raised(tmp_path: Path) -> None:
    report = _sweep().sweep_files([tmp_path / "absent"])
    assert report.unreadable and report.hits == []


def test_hit_limit_keeps_counting() -> None:
    known = KnownSecrets()
    known.add("secret-value", "s")
    sweep = SecretSweep.from_known(known, hit_limit=3)
    report = sweep.sweep([("blob", [b"secret-value " * 10])])
    assert len(report.hits) == 3 and report.hits_total == 10


def test_throughput_is_reasonable() -> None:
    # A smoke bound only; bench/ measures properly.
    known = KnownSecrets()
    for i in range(200):
        known.add(f"canary-secret-{i:04d}-xyz", f"s{i}")
    sweep = SecretSweep.from_known(known)
    data = bytes(range(256)) * 4096 * 8  # 8 MiB
    started = time.perf_counter()
    report = sweep.sweep([("blob", [data[i:i + (1 << 20)] for i in range(0, len(data), 1 << 20)])])
    assert report.hits_total == 0
    assert time.perf_counter() - started < 5


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=400), st.lists(st.integers(0, 400), max_size=4), st.integers(1, 50))
def test_files_read_in_any_chunk_size_give_what_the_whole_buffer_gives(
        noise: bytes, places: list[int], chunk: int) -> None:
    # Given a file with the secret (and its hex form) at any places, overlapping or
    # across chunk boundaries, When it is read in chunks of any size, Then the hits
    # are those of searching the whole file at once, in the same order.
    import tempfile

    data = bytearray(noise)
    for at in sorted(places, reverse=True):
        form = SECRET.encode() if at % 2 else SECRET.encode().hex().encode()
        data[min(at, len(data)):min(at, len(data))] = form
    with tempfile.NamedTemporaryFile() as handle:
        handle.write(bytes(data))
        handle.flush()
        sweep = _sweep()
        streamed = [(h.label, h.offset) for h in sweep.scan_file(Path(handle.name), chunk_bytes=chunk)]
    assert streamed == [(h.label, h.offset) for h in sweep.scan_bytes(bytes(data), "x")]


def test_codes_found_in_any_encoding() -> None:
    import base64

    text = '{"backup_codes": ["' + base64.b64encode(b"abcde-fghij").decode() + '"]}'
    assert secrets_in_text(text, ["abcde-fghij", "zzzzz-yyyyy"], "code") == ("code 1",)


# --- a file swapped between the listing and the read ---------------------------------------------


def _swapped_after_listing(monkeypatch: pytest.MonkeyPatch, swap: Callable[[Path], None]) -> None:
    """Make the sweep's listing ``swap`` each file it lists just before handing it over."""
    listed = harness.sweep.files_under

    def listing_then_swap(roots: Sequence[Path], report: SweepReport) -> Iterator[Path]:
        for path in listed(roots, report):
            swap(path)
            yield path

    monkeypatch.setattr(harness.sweep, "files_under", listing_then_swap)


def _within(limit_s: float, call: Callable[[], SweepReport]) -> SweepReport:
    """``call()`` in a daemon thread; fails (rather than hangs) if it has not returned in time."""
    answers: list[SweepReport] = []
    worker = threading.Thread(target=lambda: answers.append(call()), daemon=True)
    worker.start()
    worker.join(limit_s)
    assert answers, f"the sweep did not return within {limit_s} s"
    return answers[0]


def _to_fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def test_a_file_swapped_for_a_fifo_after_listing_is_a_gap_not_a_hang(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a log listed as a regular file and replaced by a FIFO (no writer) before it is read
    (tmp_path / "api.log").write_bytes(b"password=" + SECRET.encode())
    _swapped_after_listing(monkeypatch, _to_fifo)
    # When the files are swept
    started = time.monotonic()
    report = _within(5.0, lambda: _sweep().sweep_files([tmp_path]))
    # Then it ends at once, the FIFO named as a gap, nothing counted as searched
    assert time.monotonic() - started < 1.0
    assert report.unreadable == [f"{tmp_path / 'api.log'}: a FIFO when opened, not a regular file"]
    assert report.hits == [] and report.bytes_scanned == 0


def test_a_file_swapped_for_a_link_after_listing_is_not_followed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a clean log listed as a regular file and replaced by a link to a file holding the secret
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "secret.txt").write_bytes(SECRET.encode())
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "api.log").write_bytes(b"clean\n")

    def to_link(path: Path) -> None:
        path.unlink()
        path.symlink_to(elsewhere / "secret.txt")

    _swapped_after_listing(monkeypatch, to_link)
    # When the log directory is swept
    report = _within(5.0, lambda: _sweep().sweep_files([tmp_path / "logs"]))
    # Then the link is a gap and its target is not read in the log's name
    assert report.unreadable == [f"{tmp_path / 'logs' / 'api.log'}: a symbolic link when opened (not followed)"]
    assert report.hits == []


def test_open_regular_reads_the_file_it_checked(tmp_path: Path) -> None:
    # The descriptor checked is the one read: a file renamed over after the open is not what is read.
    path = tmp_path / "a"
    path.write_bytes(b"first")
    with open_regular(path) as stream:
        (tmp_path / "b").write_bytes(b"second")
        os.replace(tmp_path / "b", path)
        assert stream.read() == b"first"
    for special, words in ((tmp_path, "a directory"), (Path("/dev/null"), "a character device")):
        with pytest.raises(NotRegularFile) as refused:
            open_regular(special)
        assert refused.value.strerror == f"{words} when opened, not a regular file"
