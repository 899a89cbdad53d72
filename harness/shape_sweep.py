"""The secret-shape sweep: secrets the audit did not plant, found by their shape.

:class:`ShapeScan` applies the rule set of :mod:`harness.formats.secret_patterns`
to text streams line by line (a hit names the line and the byte offset) and to
database rows column by column (a hit names the row), with, in the columns the
inventory says hold ciphertext, every cell that is not a Fernet token and has
high entropy. Values shaped as Fernet tokens (cells, and lines: the service's
encrypted backups are one token a line) are not run through the rules, which
cannot match inside them; files that are ciphertext-like throughout
(:func:`looks_opaque`) can be listed instead of searched. A hit names the
rule, the place and a keyed fingerprint; the value itself is registered as a
known secret, so that nothing the run writes can hold it.

Redis values are also judged by the names they are stored under
(:meth:`ShapeScan.tee` with ``fields=True``): a hash or stream field, or a JSON
key, named in :data:`SENSITIVE_FIELDS` whose value is not ciphertext (neither a
Fernet token nor a bcrypt hash) is a hit naming the key and the field, never
the value.
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
from typing import Any, BinaryIO

from harness.formats.fernet import has_fernet_structure
from harness.formats.secret_patterns import ShapeFinder, high_entropy
from harness.redaction import KnownSecrets, SecretTooShort
from harness.sweep import DEFAULT_CHUNK_BYTES, SweepReport, files_under, open_regular

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
#: Field and JSON key names (compared in lower case) whose value is a secret or personal data
#: the page promises is never stored in plaintext.
SENSITIVE_FIELDS = frozenset({"password", "new_password", "email", "token", "secret"})
#: The rule name of a plaintext value under one of :data:`SENSITIVE_FIELDS`.
SENSITIVE_FIELD_RULE = "plaintext-sensitive-field"
#: A value or JSON document larger than this is not parsed for field names (its bytes are
#: still searched by the rules).
FIELD_JSON_BYTES = 1 << 20
#: JSON nesting followed when looking for field names.
FIELD_JSON_DEPTH = 32
_BCRYPT_SHAPED = re.compile(r"\$2[abxy]?\$\d{2}\$[./A-Za-z0-9]{53}")


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
        with open_regular(path) as handle:
            self._scan_handle(handle, str(path), lines=lines, limit_bytes=limit_bytes,
                              chunk_bytes=chunk_bytes)

    def _scan_handle(self, handle: BinaryIO, location: str, *, lines: bool, limit_bytes: int | None,
                     chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> None:
        stream = self.stream(location, lines=lines, limit_bytes=limit_bytes)
        while (chunk := handle.read(chunk_bytes)) and not stream.full:
            stream.feed(chunk)
        stream.finish()

    def scan_files(self, roots: Sequence[Path], unreadable: list[str], *, lines: bool = True,
                   limit_bytes: int | None = None, skip_opaque: bool = False) -> None:
        """Search every regular file under ``roots`` (not following links); with
        ``skip_opaque``, a file whose sampled windows are all high-entropy binary
        (:func:`looks_opaque`) is listed in ``report.opaque`` instead of searched."""
        probe = SweepReport()
        for path in files_under(roots, probe):
            try:
                # Opened once: what is judged opaque is what is searched (a file swapped for a
                # FIFO or a link after the listing is refused by open_regular, never waited on).
                with open_regular(path) as handle:
                    if skip_opaque and _opaque(handle):
                        self.report.opaque.append(str(path))
                        continue
                    handle.seek(0)
                    self._scan_handle(handle, str(path), lines=lines, limit_bytes=limit_bytes)
            except OSError as exc:
                unreadable.append(f"{path}: {exc.strerror or type(exc).__name__}")
        unreadable.extend(probe.unreadable)

    def tee(self, places: Iterable[tuple[str, Iterable[bytes]]], *, lines: bool = False,
            fields: bool = False) -> Iterator[tuple[str, Iterator[bytes]]]:
        """The same places, each stream also searched for shapes as it passes (read once).

        With ``fields`` (Redis, as :func:`harness.probes.redis_store.redis_contents` lays a
        key out: its name, then one chunk per hash or stream field, ``field\\nvalue\\n``, or
        a string's value as one chunk), every chunk after the first is also judged by
        :meth:`judge_fields`.
        """
        for location, chunks in places:
            yield location, self._teed(self.stream(location, lines=lines), chunks,
                                       location if fields else None)

    def _teed(self, stream: ShapeStream, chunks: Iterable[bytes],
              fields_of: str | None) -> Iterator[bytes]:
        for index, chunk in enumerate(chunks):
            stream.feed(chunk)
            if fields_of is not None and index:
                self.judge_fields(fields_of, chunk)
            yield chunk
        stream.finish()

    def judge_fields(self, location: str, chunk: bytes) -> None:
        """A hit for each field of ``chunk`` named in :data:`SENSITIVE_FIELDS` whose value is
        not ciphertext: a ``field\\nvalue`` pair, or the keys of a JSON document (the chunk,
        or a pair's value)."""
        head, newline, rest = chunk.partition(b"\n")
        documents = [chunk]
        if newline and rest:
            value = rest[:-1] if rest.endswith(b"\n") else rest
            name = head.decode("utf-8", "replace").strip()
            if name.lower() in SENSITIVE_FIELDS:
                self._field_hit(location, name, value.decode("utf-8", "replace"))
            documents.append(value)
        for document in documents:
            for path, text in json_sensitive_fields(document):
                self._field_hit(location, path, text)

    def _field_hit(self, location: str, name: str, value: str) -> None:
        if not value.strip() or is_ciphertext_value(value):
            return
        self._hit(ShapeHit(SENSITIVE_FIELD_RULE, f"value that is not ciphertext (neither a Fernet "
                           f"token nor a bcrypt hash) in a field named {name.split('.')[-1]!r}",
                           f"{location} field {name}", self.finder.fingerprint(value)), value)

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
                if ciphertext[index] and high_entropy(text) and not has_fernet_structure(text):
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
    with open_regular(path) as handle:
        return _opaque(handle)


def _opaque(handle: BinaryIO) -> bool:
    size = os.fstat(handle.fileno()).st_size
    if size < OPAQUE_WINDOW_BYTES:
        return False
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


def is_ciphertext_value(value: str) -> bool:
    """Whether ``value`` is stored as the page promises: a Fernet token or a bcrypt hash."""
    text = value.strip()
    return bool(_FERNET_SHAPED.fullmatch(text) or _BCRYPT_SHAPED.fullmatch(text))


def json_sensitive_fields(data: bytes) -> Iterator[tuple[str, str]]:
    """``(dotted path, value)`` of every string under a key named in :data:`SENSITIVE_FIELDS`
    in the JSON document ``data`` (nothing when it is no JSON object or array, or larger than
    :data:`FIELD_JSON_BYTES`)."""
    text = data.strip()
    if text[:1] not in (b"{", b"[") or len(text) > FIELD_JSON_BYTES:
        return
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        return
    pending: list[tuple[str, Any, int]] = [("", document, 0)]
    while pending:
        path, node, depth = pending.pop()
        if depth > FIELD_JSON_DEPTH:
            continue
        items = (node.items() if isinstance(node, dict)
                 else enumerate(node) if isinstance(node, list) else ())
        for key, child in items:
            where = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and key.lower() in SENSITIVE_FIELDS and isinstance(child, str):
                yield where, child
            elif isinstance(child, dict | list):
                pending.append((where, child, depth + 1))
