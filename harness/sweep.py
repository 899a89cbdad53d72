"""The plaintext sweep: where do known secrets occur in stored bytes?

Every secret the harness knows (canary passwords, tokens, backup codes,
e-mail addresses, key values) is searched, in every encoding
:func:`harness.redaction.encodings` names, in one pass over a byte stream with
an Aho-Corasick automaton (``ahocorasick_rs``: Rust, searching the bytes
themselves at several hundred MB/s, against about 100 MB/s for a Python-side
automaton over a decoded copy). Streams are read in chunks; consecutive chunks
overlap by the longest needle minus one byte, so a secret split across a chunk
boundary is still found, and found once.

A hit names the secret's label, the place and the offset, never the secret.

Secrets the audit did not plant are looked for by their shape in
:mod:`harness.shape_sweep`.
"""

from __future__ import annotations

import errno
import io
import os
import stat
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import ahocorasick_rs

from harness.formats.copy_text import copy_text_escaped, field_at, first_field
from harness.redaction import KnownSecrets

#: Large enough that the per-chunk work (the overlap copy, one call into the automaton)
#: is negligible next to the search itself.
DEFAULT_CHUNK_BYTES = 4 << 20
#: Up to this many needles the automaton is a full DFA (a few MB for a thousand needles).
DFA_MAX_NEEDLES = 5000
#: Smaller chunks of a stream are joined up to this size before they are searched.
MIN_SCAN_BYTES = 256 << 10

@dataclass(frozen=True)
class SweepHit:
    """One occurrence of a known secret.

    Attributes:
        label: which secret, and in which form (e.g. ``canary password (base64)``).
        location: where (``postgres:users.email_enc``, ``redis:session:42``, a file path ...).
        offset: byte offset of the first byte of the occurrence within ``location``; for a
            database cell (``row`` given), within that one value's text as ``COPY`` writes it.
        row: the database row holding it, named by its integer primary key's value, else by
            its ``ctid`` (as :mod:`harness.shape_sweep` names rows); None elsewhere.
    """

    label: str
    location: str
    offset: int
    row: str | None = None

    def describe(self) -> str:
        """``label at location:offset`` (``label at location row R, byte N`` for a database
        cell): safe to print."""
        if self.row is not None:
            return f"{self.label} at {self.location} row {self.row}, byte {self.offset}"
        return f"{self.label} at {self.location}:{self.offset}"


@dataclass
class SweepReport:
    """What one sweep over many places looked at and found.

    Attributes:
        hits: the occurrences found (at most ``hit_limit`` of them).
        hits_total: how many occurrences there were in all.
        locations: how many places were searched.
        bytes_scanned: how many bytes were searched.
        unreadable: places that could not be read, with the reason.
    """

    hits: list[SweepHit] = field(default_factory=list)
    hits_total: int = 0
    locations: int = 0
    bytes_scanned: int = 0
    unreadable: list[str] = field(default_factory=list)


class SecretSweep:
    """An automaton over every encoded form of a set of secrets.

    Build it once per run (after every canary is registered) and feed it streams.

    Attributes:
        needle_count: number of distinct encoded needles searched.
        longest: length of the longest needle, in bytes.
        hit_limit: the report keeps at most this many hits (it still counts all).
    """

    def __init__(self, needles: Iterable[tuple[bytes, str]], *, hit_limit: int = 1000) -> None:
        self.needle_count = 0
        self.longest = 0
        self.hit_limit = hit_limit
        patterns: list[bytes] = []
        seen: set[bytes] = set()
        self._labels: list[str] = []
        for needle, label in needles:
            if not needle or needle in seen:
                continue
            seen.add(needle)
            patterns.append(bytes(needle))
            self._labels.append(label)
            self.needle_count += 1
            self.longest = max(self.longest, len(needle))
        # Standard match semantics with overlapping matches: every occurrence of
        # every needle, also one inside another, as a classic Aho-Corasick reports them.
        # A full DFA searches about 15% faster than the library's default; its size
        # grows with the needles, so a very large set is left to the default.
        implementation = (ahocorasick_rs.Implementation.DFA if len(patterns) <= DFA_MAX_NEEDLES
                          else None)
        self._automaton = (ahocorasick_rs.BytesAhoCorasick(patterns, implementation=implementation)
                           if patterns else None)
        self._patterns = patterns

    @classmethod
    def from_known(cls, secrets: KnownSecrets, *, hit_limit: int = 1000) -> SecretSweep:
        """A sweep for every secret registered so far, in every encoding."""
        return cls(secrets.needles(), hit_limit=hit_limit)

    def in_copy_text(self) -> SecretSweep:
        """This sweep for ``COPY`` text, where a value's backslash, tab, newline and the other
        control characters are escaped: each needle holding one is searched in its escaped form
        instead (same label), so a stored secret is found whatever bytes it holds, and a needle
        holding a backslash does not match the escapes of another value (its ``\\t`` the
        ``\\t`` COPY writes for a tab)."""
        return SecretSweep([(copy_text_escaped(p), label) for p, label in
                            zip(self._patterns, self._labels, strict=True)], hit_limit=self.hit_limit)

    def scan_bytes(self, data: bytes, location: str, *, base_offset: int = 0) -> list[SweepHit]:
        """Every occurrence in one buffer."""
        return list(self._iter(data, location, base_offset, 0))

    def _iter(self, data: bytes | memoryview, location: str, base_offset: int,
              skip_ends_before: int) -> Iterator[SweepHit]:
        if self._automaton is None or not data:
            return
        matches = self._automaton.find_matches_as_indexes(data, overlapping=True)
        # In stream order: by the end of the occurrence, the longest first among
        # those ending at the same byte.
        matches.sort(key=lambda match: (match[2], match[1]))
        for index, start, end in matches:
            # A match ending inside the carried-over overlap was already reported
            # with the previous chunk.
            if end > skip_ends_before:
                yield SweepHit(self._labels[index], location, base_offset + start)

    def scan_copy_rows(self, block: bytes, locations: Sequence[str | None]) -> Iterator[SweepHit]:
        """Every occurrence inside one field of a block of whole ``COPY`` text lines (a
        table's rows as the server writes them, each value escaped), in stream order: named by
        ``locations[i]`` for a line's ``i``-th field (None: a field not searched, such as a
        row's ``ctid``), the row by its line's first field, the offset within the field's text.

        The block is searched whole, as it arrives (459 MB of ``channels`` with 233 needles:
        0.34 CPU s), and only a hit is placed in its field (:func:`field_at`). An occurrence
        that crosses a tab or a newline spans two fields and is dropped: a value's own tabs and
        newlines are escaped, so these are exactly the occurrences a search of each column's
        text alone finds, less the ones across two consecutive values of a column (joined only
        by the separator, never one stored value). Blocks are whole lines, so nothing found
        spans two blocks.

        Raises:
            ValueError: a hit on a line with more fields than ``locations``.
        """
        if self._automaton is None or not block:
            return
        matches = self._automaton.find_matches_as_indexes(block, overlapping=True)
        matches.sort(key=lambda match: (match[2], match[1]))
        for index, start, end in matches:
            place = field_at(block, start, end)
            if place is None:
                continue
            line, column, field = place
            if column >= len(locations):
                raise ValueError(f"a COPY line has more than {len(locations)} fields")
            location = locations[column]
            if location is not None:
                named = first_field(block, line)
                # A row named by nothing reads NULL in its name's place.
                row = None if named == b"\\N" else named.decode("utf-8", "replace")
                yield SweepHit(self._labels[index], location, start - field, row)

    def scan_stream(self, chunks: Iterable[bytes], location: str, *,
                    min_chunk_bytes: int = MIN_SCAN_BYTES) -> Iterator[SweepHit]:
        """Every occurrence in a stream given as consecutive chunks of any size.

        Chunks smaller than ``min_chunk_bytes`` (a ``COPY`` stream yields one per
        row) are joined before they are searched, so that the cost per call into
        the automaton is paid per buffer, not per row.
        """
        carry = b""
        consumed = 0
        keep = max(self.longest - 1, 0)
        for chunk in coalesced(chunks, min_chunk_bytes):
            buffer = carry + chunk
            yield from self._iter(buffer, location, consumed - len(carry), len(carry))
            consumed += len(chunk)
            carry = buffer[-keep:] if keep else b""

    def scan_file(self, path: Path, *, chunk_bytes: int = DEFAULT_CHUNK_BYTES,
                  location: str | None = None) -> Iterator[SweepHit]:
        """Every occurrence in one regular file, opened once by :func:`open_regular` (links
        not followed) and read in chunks.

        Raises:
            OSError: unreadable, or not a regular file when opened (:class:`NotRegularFile`).
        """
        with open_regular(path) as stream:
            yield from self.scan_open_file(stream, location or str(path), chunk_bytes=chunk_bytes)

    def scan_open_file(self, stream: io.FileIO, location: str, *,
                       chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> Iterator[SweepHit]:
        """Every occurrence in an open file, read in chunks from where it stands.

        Each chunk is read into one reused buffer behind the previous chunk's
        last ``longest - 1`` bytes, and searched where it lies: no byte of the
        file is copied in Python.
        """
        keep = max(self.longest - 1, 0)
        buffer = bytearray(keep + chunk_bytes)
        view = memoryview(buffer)
        carried = 0
        consumed = 0
        while read := stream.readinto(view[carried:carried + chunk_bytes]):
            end = carried + read
            yield from self._iter(view[:end], location, consumed - carried, carried)
            consumed += read
            carried = min(keep, end)
            buffer[:carried] = view[end - carried:end]
    def sweep(self, places: Iterable[tuple[str, Iterable[bytes]]],
              report: SweepReport | None = None) -> SweepReport:
        """Scan many (location, chunks) pairs into one report."""
        report = report or SweepReport()
        for location, chunks in places:
            report.locations += 1
            counted = _Counting(chunks)
            self.record(report, self.scan_stream(counted, location))
            report.bytes_scanned += counted.total
        return report

    def sweep_files(self, roots: Sequence[Path], report: SweepReport | None = None, *,
                    chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> SweepReport:
        """Scan every regular file under ``roots`` (files or directories), not following links."""
        report = report or SweepReport()
        for path in files_under(roots, report):
            report.locations += 1
            # Listed as a regular file, opened once and judged by what was opened: a FIFO or a
            # link put in its place since the listing is a gap, never a hang or another file.
            try:
                with open_regular(path) as stream:
                    size = os.fstat(stream.fileno()).st_size
                    self.record(report, self.scan_open_file(stream, str(path), chunk_bytes=chunk_bytes))
            except OSError as exc:
                report.unreadable.append(f"{path}: {exc.strerror or type(exc).__name__}")
                continue
            report.bytes_scanned += size
        return report

    def absorb(self, report: SweepReport, part: SweepReport) -> None:
        """Add the report of a part searched apart (a part of a table) to ``report``, after
        what it holds: bytes, hits in all, and hits kept up to :attr:`hit_limit`."""
        report.bytes_scanned += part.bytes_scanned
        report.hits_total += part.hits_total
        report.hits.extend(part.hits[:max(0, self.hit_limit - len(report.hits))])
        report.unreadable.extend(part.unreadable)

    def record(self, report: SweepReport, hits: Iterable[SweepHit]) -> None:
        """Count ``hits`` into ``report``, keeping the first :attr:`hit_limit` of them."""
        for hit in hits:
            report.hits_total += 1
            if len(report.hits) < self.hit_limit:
                report.hits.append(hit)


def coalesced(chunks: Iterable[bytes | bytearray | memoryview], min_bytes: int) -> Iterator[bytes]:
    """The same bytes, in order, as chunks of at least ``min_bytes`` (except the last).

    Chunks may be any bytes-like objects; each is copied to bytes as it comes
    (psycopg hands COPY rows out as memoryviews of libpq's buffers: holding
    thousands of them until a block is full made reading a column twice as slow).
    """
    pending: list[bytes] = []
    size = 0
    for chunk in chunks:
        if not chunk:
            continue
        data = chunk if type(chunk) is bytes else bytes(chunk)
        if not pending and len(data) >= min_bytes:
            yield data
            continue
        pending.append(data)
        size += len(data)
        if size >= min_bytes:
            yield b"".join(pending)
            pending, size = [], 0
    if pending:
        yield b"".join(pending)


class _Counting:
    """Counts the bytes of the chunks it passes on."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = chunks
        self.total = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            self.total += len(chunk)
            yield chunk


class NotRegularFile(OSError):
    """A path that was listed as a regular file held something else when it was opened."""


_SPECIAL_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                  (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                  (stat.S_ISDIR, "a directory"))


def open_regular(path: Path, *, follow_links: bool = False) -> io.FileIO:
    """``path`` opened once for reading, if what it names when opened is a regular file.

    Opened with ``O_NONBLOCK`` (a FIFO put in the file's place would otherwise wait
    for a writer) and, unless ``follow_links``, ``O_NOFOLLOW``; the open descriptor
    is checked with ``fstat`` and is the one read, so nothing swapped in after the
    check is read instead. ``O_NONBLOCK`` changes nothing for a regular file's reads.

    Raises:
        NotRegularFile: a FIFO, socket, device, directory, or (links not followed) a
            symbolic link; its ``strerror`` says which.
        OSError: it cannot be opened.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY | (0 if follow_links else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP and not follow_links:
            raise NotRegularFile(errno.ELOOP, "a symbolic link when opened (not followed)",
                                 str(path)) from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = next((name for test, name in _SPECIAL_KINDS if test(mode)), "not a regular file")
            raise NotRegularFile(errno.EINVAL, f"{kind} when opened, not a regular file", str(path))
        return io.FileIO(fd, "rb", closefd=True)
    except BaseException:
        os.close(fd)
        raise


def _kind(mode: int) -> str:
    """What a non-regular, non-directory entry is, in words."""
    if stat.S_ISLNK(mode):
        return "a symbolic link (not followed inside a searched directory)"
    return next((name for test, name in _SPECIAL_KINDS if test(mode)), "not a regular file")


def files_under(roots: Sequence[Path], report: SweepReport) -> Iterator[Path]:
    """Every regular file under ``roots`` (files or directories), each taken once.

    A root the user named is followed if it is a symbolic link (to its real path, which is
    what is listed and opened). Inside a directory nothing is followed: a symbolic link,
    FIFO, socket or device there goes to ``report.unreadable`` with its kind, never skipped
    silently, so a sweep over "0 places" still says what it could not read. Directories and
    files are taken once by ``(st_dev, st_ino)``, so two roots naming one tree (or a link
    and its target) are not searched twice.
    """
    seen: set[tuple[int, int]] = set()
    for root in roots:
        real = Path(os.path.realpath(root))
        try:
            info = os.stat(real)
        except OSError as exc:
            reason = "not found" if exc.errno == errno.ENOENT else (exc.strerror or type(exc).__name__)
            report.unreadable.append(f"{root}: {reason}")
            continue
        identity = (info.st_dev, info.st_ino)
        if identity in seen:
            continue
        seen.add(identity)
        if stat.S_ISREG(info.st_mode):
            yield real
        elif stat.S_ISDIR(info.st_mode):
            yield from _walk(real, report, seen)
        else:
            report.unreadable.append(f"{root}: {_kind(info.st_mode)}, not a regular file")


def _walk(directory: Path, report: SweepReport, seen: set[tuple[int, int]]) -> Iterator[Path]:
    """The regular files below ``directory``, in name order, depth first; links not followed."""
    try:
        with os.scandir(directory) as listing:
            entries = sorted(listing, key=lambda entry: entry.name)
    except OSError as exc:
        report.unreadable.append(f"{directory}: {exc.strerror or type(exc).__name__}")
        return
    for entry in entries:
        path = Path(entry.path)
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError as exc:
            report.unreadable.append(f"{path}: {exc.strerror or type(exc).__name__}")
            continue
        identity = (info.st_dev, info.st_ino)
        if stat.S_ISDIR(info.st_mode):
            if identity not in seen:
                seen.add(identity)
                yield from _walk(path, report, seen)
        elif stat.S_ISREG(info.st_mode):
            if identity not in seen:
                seen.add(identity)
                yield path
        else:
            report.unreadable.append(f"{path}: {_kind(info.st_mode)}")


def secrets_in_text(text: str, secrets: Sequence[str], label: str) -> tuple[str, ...]:
    """Labels (``label N``) of the secrets found in ``text`` in any encoding."""
    known = KnownSecrets()
    for i, secret in enumerate(secrets):
        known.add(secret, f"{label} {i + 1}")
    hits = SecretSweep.from_known(known).scan_bytes(text.encode("utf-8", "replace"), "answer")
    return tuple(sorted({hit.label.split(" (")[0] for hit in hits}))

