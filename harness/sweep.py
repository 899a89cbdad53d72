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

Beside the known secrets, :class:`ShapeScan` looks for secrets the audit did
not plant, by their shape (:mod:`harness.formats.secret_patterns`): in text
streams line by line (a hit names the line and the byte offset), and in
database rows column by column (a hit names the row), with, in the columns the
inventory says hold ciphertext, every cell that is not a Fernet token and has
high entropy. A shape hit names the rule, the place and a keyed fingerprint;
the value itself is registered as a known secret, so that nothing the run
writes can hold it.
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import json
import math
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ahocorasick_rs

from harness.formats.fernet import FernetTokenError, parse_fernet_token
from harness.formats.secret_patterns import ShapeFinder, high_entropy
from harness.redaction import KnownSecrets, SecretTooShort

#: Large enough that the per-chunk work (the overlap copy, one call into the automaton)
#: is negligible next to the search itself.
DEFAULT_CHUNK_BYTES = 4 << 20
#: Up to this many needles the automaton is a full DFA (a few MB for a thousand needles).
DFA_MAX_NEEDLES = 5000
#: Smaller chunks of a stream are joined up to this size before they are searched.
MIN_SCAN_BYTES = 256 << 10
#: A line longer than this is searched for secret shapes in pieces of this size (a value
#: split across two pieces of one such line is not found; a log line is far shorter).
SHAPE_LINE_BYTES = 1 << 20
#: The rule name of a high-entropy cell that is not a Fernet token in a ciphertext column.
HIGH_ENTROPY_RULE = "high-entropy-in-ciphertext-column"
#: A Fernet token's shape: version byte 0x80 and a timestamp's zero high bytes, then base64url.
_FERNET_SHAPED = re.compile(r"gAAAAA[A-Za-z0-9_\-]*={0,2}")
_BASE64URL_RUN = re.compile(r"[A-Za-z0-9_\-]*={0,2}")
#: A secret-shaped value found is registered as a known secret under a label starting so.
FOUND_LABEL_PREFIX = "found "


@dataclass(frozen=True)
class SweepHit:
    """One occurrence of a known secret.

    Attributes:
        label: which secret, and in which form (e.g. ``canary password (base64)``).
        location: where (``users.email_enc``, ``redis:session:42``, a file path ...).
        offset: byte offset of the first byte of the occurrence within ``location``.
    """

    label: str
    location: str
    offset: int

    def describe(self) -> str:
        """``label at location:offset``: safe to print."""
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

    def locations_hit(self) -> dict[str, list[str]]:
        """Location → sorted labels found there (for a short, diffable FAIL message)."""
        found: dict[str, set[str]] = {}
        for hit in self.hits:
            found.setdefault(hit.location, set()).add(hit.label)
        return {location: sorted(labels) for location, labels in sorted(found.items())}


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

    @classmethod
    def from_known(cls, secrets: KnownSecrets, *, hit_limit: int = 1000) -> SecretSweep:
        """A sweep for every secret registered so far, in every encoding."""
        return cls(secrets.needles(), hit_limit=hit_limit)

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
        """Every occurrence in one file, read in chunks (raises OSError if unreadable).

        Each chunk is read into one reused buffer behind the previous chunk's
        last ``longest - 1`` bytes, and searched where it lies: no byte of the
        file is copied in Python.
        """
        where = location or str(path)
        keep = max(self.longest - 1, 0)
        buffer = bytearray(keep + chunk_bytes)
        view = memoryview(buffer)
        carried = 0
        consumed = 0
        with path.open("rb", buffering=0) as stream:
            while read := stream.readinto(view[carried:carried + chunk_bytes]):
                end = carried + read
                yield from self._iter(view[:end], where, consumed - carried, carried)
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
            self._record(report, self.scan_stream(counted, location))
            report.bytes_scanned += counted.total
        return report

    def sweep_files(self, roots: Sequence[Path], report: SweepReport | None = None, *,
                    chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> SweepReport:
        """Scan every regular file under ``roots`` (files or directories), not following links."""
        report = report or SweepReport()
        for path in _files_under(roots, report):
            report.locations += 1
            try:
                size = path.stat().st_size
                self._record(report, self.scan_file(path, chunk_bytes=chunk_bytes))
            except OSError as exc:
                report.unreadable.append(f"{path}: {exc.strerror or type(exc).__name__}")
                continue
            report.bytes_scanned += size
        return report

    def _record(self, report: SweepReport, hits: Iterable[SweepHit]) -> None:
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


def _files_under(roots: Sequence[Path], report: SweepReport) -> Iterator[Path]:
    for root in roots:
        if root.is_symlink():
            continue
        if root.is_file():
            yield root
            continue
        if not root.is_dir():
            report.unreadable.append(f"{root}: not found")
            continue

        def on_error(exc: OSError) -> None:
            report.unreadable.append(f"{exc.filename}: {exc.strerror or type(exc).__name__}")

        for folder, _dirs, names in os.walk(root, onerror=on_error):
            for name in sorted(names):
                path = Path(folder) / name
                if path.is_file() and not path.is_symlink():
                    yield path


def secrets_in_text(text: str, secrets: Sequence[str], label: str) -> tuple[str, ...]:
    """Labels (``label N``) of the secrets found in ``text`` in any encoding."""
    known = KnownSecrets()
    for i, secret in enumerate(secrets):
        known.add(secret, f"{label} {i + 1}")
    hits = SecretSweep.from_known(known).scan_bytes(text.encode("utf-8", "replace"), "answer")
    return tuple(sorted({hit.label.split(" (")[0] for hit in hits}))


@dataclass(frozen=True)
class ShapeHit:
    """One secret-shaped value the audit did not necessarily plant.

    Attributes:
        rule: the rule that matched (``jwt``, ``google-oauth-access-token`` ...).
        kind: what it is, in words.
        location: where (``postgres:table.column``, ``redis:<key>``, a file path).
        fingerprint: keyed fingerprint of the value (``hmac:…``), never the value.
        row: the row's id, for a database cell.
        line: the line number (from 1), for a file searched by lines.
        offset: byte offset within the location's stream (files, Redis values).
    """

    rule: str
    kind: str
    location: str
    fingerprint: str
    row: str | None = None
    line: int | None = None
    offset: int | None = None

    @property
    def place(self) -> str:
        """``location`` with the row, line or offset: safe to print."""
        if self.row is not None:
            return f"{self.location} row {self.row}"
        if self.line is not None:
            return f"{self.location} line {self.line}"
        return f"{self.location} offset {self.offset}" if self.offset is not None else self.location

    def describe(self) -> str:
        """``kind at place (fingerprint)``: safe to print."""
        return f"{self.kind} at {self.place} ({self.fingerprint})"


@dataclass
class ShapeReport:
    """What a shape scan over many places looked at and found.

    Attributes:
        hits: the hits kept (at most ``ShapeScan.hit_limit``).
        hits_total: every hit.
        places: places searched (columns, keys, files).
        rows: database rows searched.
        bytes_scanned: bytes searched.
        cut: places searched only up to the byte bound, with the bound.
        opaque: files not searched for shapes because every sampled window of them is
            high-entropy binary (ciphertext: no secret in it has a recognisable shape).
    """

    hits: list[ShapeHit] = field(default_factory=list)
    hits_total: int = 0
    places: int = 0
    rows: int = 0
    bytes_scanned: int = 0
    cut: list[str] = field(default_factory=list)
    opaque: list[str] = field(default_factory=list)


class ShapeScan:
    """Searches streams and rows for secret shapes into one :class:`ShapeReport`.

    Attributes:
        finder: the rule set with the run's fingerprint key.
        report: what was searched and found.
        hit_limit: hits kept in the report (all are counted).
    """

    def __init__(self, finder: ShapeFinder, known: KnownSecrets | None = None, *,
                 hit_limit: int = 1000) -> None:
        self.finder = finder
        self.report = ShapeReport()
        self.hit_limit = hit_limit
        self._known = known

    def _hit(self, hit: ShapeHit, value: str) -> None:
        if value in hit.location:
            # A Redis key (or a file name) that holds the value itself is named without it.
            hit = dataclasses.replace(hit, location=hit.location.replace(
                value, f"[{hit.rule} {hit.fingerprint}]"))
        self.report.hits_total += 1
        if len(self.report.hits) < self.hit_limit:
            self.report.hits.append(hit)
        if self._known is not None:
            # What was found is a secret of this run from now on: redacted from every output.
            with contextlib.suppress(SecretTooShort, ValueError):
                self._known.add(value.encode("latin-1", "replace"), FOUND_LABEL_PREFIX + hit.rule)

    def stream(self, location: str, *, lines: bool = True, limit_bytes: int | None = None
               ) -> ShapeStream:
        """A stream to :meth:`ShapeStream.feed` the bytes of one place into."""
        self.report.places += 1
        return ShapeStream(self, location, lines, limit_bytes)

    def scan_file(self, path: Path, *, lines: bool = True, limit_bytes: int | None = None,
                  chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> None:
        """Search one file (raises OSError if unreadable)."""
        stream = self.stream(str(path), lines=lines, limit_bytes=limit_bytes)
        with path.open("rb") as handle:
            while (chunk := handle.read(chunk_bytes)) and not stream.full:
                stream.feed(chunk)
        stream.finish()

    def scan_files(self, roots: Sequence[Path], unreadable: list[str], *, lines: bool = True,
                   limit_bytes: int | None = None, skip_opaque: bool = False) -> None:
        """Search every regular file under ``roots`` (not following links); with
        ``skip_opaque``, a file whose sampled windows are all high-entropy binary
        (:func:`looks_opaque`) is listed in ``report.opaque`` instead of searched."""
        probe = SweepReport()
        for path in _files_under(roots, probe):
            try:
                if skip_opaque and looks_opaque(path):
                    self.report.opaque.append(str(path))
                    continue
                self.scan_file(path, lines=lines, limit_bytes=limit_bytes)
            except OSError as exc:
                unreadable.append(f"{path}: {exc.strerror or type(exc).__name__}")
        unreadable.extend(probe.unreadable)

    def tee(self, places: Iterable[tuple[str, Iterable[bytes]]], *, lines: bool = False
            ) -> Iterator[tuple[str, Iterator[bytes]]]:
        """The same places, each stream also searched for shapes as it passes (read once)."""
        for location, chunks in places:
            yield location, self._teed(self.stream(location, lines=lines), chunks)

    @staticmethod
    def _teed(stream: ShapeStream, chunks: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            stream.feed(chunk)
            yield chunk
        stream.finish()

    def scan_rows(self, rows: Sequence[Sequence[Any]], locations: Sequence[str],
                  ciphertext: Sequence[bool]) -> None:
        """Search one batch of ``(row id, *cells)`` rows; ``locations[i]`` names column i,
        ``ciphertext[i]`` says whether the inventory makes it a Fernet column.

        A cell shaped as a Fernet token (``gAAAAA`` and base64url only: whether it is a
        valid one is at_rest.tokens_fernet's question) is not searched with the rules: no
        rule matches inside such a run (each rule needs a character outside base64url, or a
        start that is not preceded by a token character; the look-alike tests hold 50,000
        tokens), and this keeps a table of tokens cheap.
        """
        self.report.rows += len(rows)
        for index, location in enumerate(locations):
            column = index + 1
            cells: list[str] = []
            positions: list[int] = []
            for position, row in enumerate(rows):
                text = cell_text(row[column])
                if text is None or _FERNET_SHAPED.fullmatch(text):
                    continue
                if ciphertext[index] and high_entropy(text) and not _is_fernet(text):
                    self._hit(ShapeHit(HIGH_ENTROPY_RULE, "high-entropy value that is not a Fernet "
                                       "token, in a ciphertext column", location,
                                       self.finder.fingerprint(text),
                                       row=cell_text(row[0]) or "?"), text)
                # One cell a line: a line break inside a cell is a space here.
                cells.append(text.replace("\n", " "))
                positions.append(position)
            if not cells:
                continue
            joined = "\n".join(cells)
            self.report.bytes_scanned += len(joined)
            starts = [0]
            for cell in cells[:-1]:
                starts.append(starts[-1] + len(cell) + 1)
            for match in self.finder.find(joined):
                row = rows[positions[bisect.bisect_right(starts, match.start) - 1]]
                self._hit(ShapeHit(match.rule, match.kind, location, match.fingerprint,
                                   row=cell_text(row[0]) or "?"), match.value)


class ShapeStream:
    """One place's bytes, searched for shapes line by line as they are fed.

    Attributes:
        full: the byte bound was reached (what follows is not searched).
    """

    def __init__(self, scan: ShapeScan, location: str, lines: bool, limit_bytes: int | None) -> None:
        self._scan = scan
        self._location = location
        self._lines = lines
        self._limit = limit_bytes
        self._pending = b""
        self._consumed = 0
        self._line = 0
        self._in_token = False
        self.full = False

    def feed(self, chunk: bytes) -> None:
        """Search the complete lines of what was fed so far."""
        if self.full or not chunk:
            return
        if self._limit is not None and self._consumed + len(self._pending) + len(chunk) > self._limit:
            chunk = chunk[:max(self._limit - self._consumed - len(self._pending), 0)]
            self.full = True
            self._scan.report.cut.append(f"{self._location} (first {self._limit} bytes)")
        data = self._pending + bytes(chunk)
        cut = data.rfind(b"\n") + 1
        if cut == 0 and len(data) >= SHAPE_LINE_BYTES:
            cut = len(data)
        self._pending = data[cut:]
        self._search(data[:cut])
        if self.full:
            self.finish()

    def finish(self) -> None:
        """Search what is left (the last line, without its line break)."""
        pending, self._pending = self._pending, b""
        self._search(pending)

    def _search(self, data: bytes) -> None:
        if not data:
            return
        text = data.decode("latin-1")  # one character per byte: offsets are byte offsets
        # Lines shaped as Fernet tokens (an encrypted backup is one a line) are not run
        # through the rules, as in scan_rows; a line longer than SHAPE_LINE_BYTES arrives
        # in pieces, and a piece continuing such a line is skipped while it stays base64url.
        pieces = text.split("\n")
        kept: list[tuple[int, str]] = []
        at = 0
        for index, piece in enumerate(pieces):
            continues = index == 0 and self._in_token
            if (_BASE64URL_RUN.fullmatch(piece) if continues
                    else _FERNET_SHAPED.fullmatch(piece)) is None:
                kept.append((at, piece))
                token_line = False
            else:
                token_line = True
            at += len(piece) + 1
        # Whether the last piece (a line that may go on in the next data) is a token so far.
        self._in_token = token_line and not text.endswith("\n")
        starts = [start for start, _ in kept]
        joined = "\n".join(piece for _, piece in kept)
        offsets = [0]
        for _, piece in kept[:-1]:
            offsets.append(offsets[-1] + len(piece) + 1)
        for match in self._scan.finder.find(joined):
            which = bisect.bisect_right(offsets, match.start) - 1
            start = starts[which] + match.start - offsets[which]
            line = self._line + text.count("\n", 0, start) + 1 if self._lines else None
            self._scan._hit(ShapeHit(match.rule, match.kind, self._location, match.fingerprint,
                                     line=line, offset=self._consumed + start), match.value)
        self._line += len(pieces) - 1
        self._consumed += len(data)
        self._scan.report.bytes_scanned += len(data)


#: :func:`looks_opaque` reads windows of this size at the start, the middle and the end.
OPAQUE_WINDOW_BYTES = 64 << 10
#: Bits per byte above which a window is ciphertext-like (text stays under 6.5; random
#: bytes in a 64 KiB window measure about 7.997).
OPAQUE_BITS_PER_BYTE = 7.9


def looks_opaque(path: Path) -> bool:
    """Whether the file's first, middle and last :data:`OPAQUE_WINDOW_BYTES` all have
    more than :data:`OPAQUE_BITS_PER_BYTE` bits of entropy per byte (raises OSError)."""
    size = path.stat().st_size
    if size < OPAQUE_WINDOW_BYTES:
        return False
    with path.open("rb") as handle:
        for at in (0, (size - OPAQUE_WINDOW_BYTES) // 2, size - OPAQUE_WINDOW_BYTES):
            handle.seek(at)
            if _bits_per_byte(handle.read(OPAQUE_WINDOW_BYTES)) <= OPAQUE_BITS_PER_BYTE:
                return False
    return True


def _bits_per_byte(data: bytes) -> float:
    if not data:
        return 0.0
    total = len(data)
    return -sum(n / total * math.log2(n / total) for n in Counter(data).values())


def cell_text(value: object) -> str | None:
    """A database cell as text (bytes one character a byte; JSON as JSON); None for NULL."""
    if value is None:
        return None
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("latin-1")
    if isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _is_fernet(text: str) -> bool:
    try:
        parse_fernet_token(text)
    except FernetTokenError:
        return False
    return True
