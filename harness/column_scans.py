"""Column scans: whole columns judged cell by cell in batches, in flat memory.

The at-rest probes stream token and hash columns through these: every cell is
counted by its Fernet failure reason or its hash scheme and cost (a garbage
cell is a counted reason, never a crash), and the valid token cells'
fingerprints go to a :class:`DuplicateCounter` that finds shared IVs and
ciphertexts without a Python object per cell. A token cell is valid when
``cryptography``'s Fernet would decrypt it: its HMAC verifies under a key of
the ring *and* its plaintext's padding is correct (an authentic cell with
broken padding is counted as ``bad_padding``).
"""

from __future__ import annotations

import itertools
import re
import tempfile
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from harness.formats.bcrypt_hash import HashScheme, bcrypt_cost_histogram, classify_stored_hash
from harness.formats.copy_text import copy_text_rows
from harness.formats.fernet import (
    FINGERPRINT_BYTES,
    FernetFailure,
    FernetKey,
    FernetRingVerifier,
    FernetTokenError,
    fingerprint,
)
from harness.formats.fernet_engine import CopyBlockJudge, native_module

#: How many failing rows a verdict names (by row id, never by value).
EXAMPLES = 10
#: A prime, so that IV prefixes with a constant first byte (a counter, a clock) still spread.
DUPLICATE_BUCKETS = 251
#: Token cells whose IV and ciphertext values the duplicate count holds in memory (32 MB)
#: before it writes them out to a temporary file.
DUPLICATE_MEMORY_CELLS = 2_000_000
#: Cells whose fingerprints are split into buckets at one time (a transient 1 MB).
DUPLICATE_SPLIT_CELLS = 65_536
#: Channel rows fetched per round trip when the token columns are streamed.
TOKEN_BATCH_ROWS = 5_000
#: Password hashes are classified this many rows at a time (one regular expression a batch).
HASH_BATCH_ROWS = 10_000


class DuplicateCounter:
    """Counts cells that share an IV or a ciphertext with another cell, in flat memory.

    Each valid cell is its 16-byte :func:`~harness.formats.fernet.fingerprint`
    (the IV's first 8 bytes and the ciphertext's last 8), appended in bulk to
    one buffer: no Python object per cell. Once ``memory_cells`` cells are held
    (32 MB by default), their two halves are split into
    :data:`DUPLICATE_BUCKETS` buckets by value modulo a prime (equal values
    always share a bucket) and written to an anonymous temporary file, so memory
    stays flat however many rows a table has (16 bytes a cell on disk instead:
    320 MB for ten million rows of two tokens). At the end each bucket is read
    back and checked on its own: a transient set of about 1/251 of the values at
    a time. A repeated 8-byte half is reported as a repeated IV (ciphertext): two
    different random values share one with probability 2^-64 per pair,
    negligible for any table.
    """

    def __init__(self, *, memory_cells: int = DUPLICATE_MEMORY_CELLS,
                 spill_path: Path | None = None) -> None:
        self._memory_bytes = memory_cells * FINGERPRINT_BYTES
        self._held = bytearray()
        self._spill_path = spill_path
        self._spill: BinaryIO | None = None
        # Where each bucket's values of each spill went: (IV offset, count, ciphertext offset, count).
        self._spilled: list[list[tuple[int, int, int, int]]] = []
        self._result: tuple[int, int, int] | None = None

    def add_fingerprints(self, data: bytes | bytearray) -> None:
        """Count cells given as their fingerprints, end to end (16 bytes each)."""
        self._held += data
        if len(self._held) >= self._memory_bytes:
            self._write_out()

    def _split_held(self) -> tuple[list[array[int]], list[array[int]]]:
        """The held cells' IV halves and ciphertext halves, each split into buckets."""
        native = native_module()
        if native is not None:
            # The same split in native code: the same values, in the same buckets and order.
            halves = native.split_halves(bytes(self._held), DUPLICATE_BUCKETS)
            self._held = bytearray()
            return [[_values(data) for data in half] for half in halves]  # type: ignore[return-value]
        ivs = [array("Q") for _ in range(DUPLICATE_BUCKETS)]
        ciphertexts = [array("Q") for _ in range(DUPLICATE_BUCKETS)]
        into_ivs = [bucket.append for bucket in ivs]
        into_ciphertexts = [bucket.append for bucket in ciphertexts]
        held = memoryview(self._held)
        step = DUPLICATE_SPLIT_CELLS * FINGERPRINT_BYTES
        for start in range(0, len(held), step):
            # Native byte order: only equality matters, and equal bytes give equal values.
            values = array("Q", held[start:start + step].tobytes())
            for value in values[0::2]:
                into_ivs[value % DUPLICATE_BUCKETS](value)
            for value in values[1::2]:
                into_ciphertexts[value % DUPLICATE_BUCKETS](value)
        held.release()
        self._held = bytearray()
        return ivs, ciphertexts

    def _write_out(self) -> None:
        if self._spill is None and self._spill_path is not None:
            # Named, so that another process merges it (see export()); its directory's
            # owner removes it.
            self._spill = self._spill_path.open("w+b")
        elif self._spill is None:
            # It lives as long as the counter (result() closes it); the OS removes it
            # when it is closed, or when the process ends.
            self._spill = tempfile.TemporaryFile(prefix="votriz-audit-duplicates-")  # noqa: SIM115
        places = []
        for ivs, ciphertexts in zip(*self._split_held(), strict=True):
            iv_at = self._spill.tell()
            ivs.tofile(self._spill)
            ct_at = self._spill.tell()
            ciphertexts.tofile(self._spill)
            places.append((iv_at, len(ivs), ct_at, len(ciphertexts)))
        self._spilled.append(places)

    def _buckets(self, ciphertexts: bool) -> Iterator[array[int]]:
        """Every bucket's values, read back from the temporary file one bucket at a time."""
        assert self._spill is not None
        for index in range(DUPLICATE_BUCKETS):
            yield _bucket_values([(self._spill, self._spilled)], index, ciphertexts)

    def export(self) -> DuplicateSpill:
        """Write every cell out to the counter's ``spill_path`` and hand over where each
        bucket is, for :func:`shared_across_spills` in another process; the counter is done."""
        if self._spill_path is None:
            raise ValueError("a counter without a spill_path cannot be exported")
        if self._held or self._spill is None:
            self._write_out()
        assert self._spill is not None
        self._spill.close()
        self._spill = None
        spill = DuplicateSpill(self._spill_path, tuple(tuple(p) for p in self._spilled))
        self._spilled = []
        return spill

    def result(self) -> tuple[int, int, int]:
        """(cells sharing an IV, distinct shared IVs, cells sharing a ciphertext)."""
        if self._result is None:
            if self._spilled:
                if self._held:
                    self._write_out()
                iv_cells, iv_groups = _shared(self._buckets(ciphertexts=False))
                ct_cells, _ = _shared(self._buckets(ciphertexts=True))
            else:
                ivs, ciphertexts = self._split_held()
                iv_cells, iv_groups = _shared(ivs)
                ct_cells, _ = _shared(ciphertexts)
            self._result = (iv_cells, iv_groups, ct_cells)
            if self._spill is not None:
                self._spill.close()
                self._spill = None
                self._spilled = []
        return self._result


@dataclass(frozen=True)
class DuplicateSpill:
    """The fingerprints one :class:`DuplicateCounter` wrote out, split into buckets.

    Attributes:
        path: the file.
        places: per write-out, per bucket: (IV offset, count, ciphertext offset, count).
    """

    path: Path
    places: tuple[tuple[tuple[int, int, int, int], ...], ...]


def _bucket_values(sources: Sequence[tuple[BinaryIO, Sequence[Sequence[tuple[int, int, int, int]]]]],
                   index: int, ciphertexts: bool) -> array[int]:
    """Bucket ``index``'s IV (or ciphertext) halves from every write-out of every source."""
    values = array("Q")
    for file, spilled in sources:
        for places in spilled:
            at, count = places[index][2:] if ciphertexts else places[index][:2]
            if count:
                file.seek(at)
                values.fromfile(file, count)
    return values


def _values(data: bytes) -> array[int]:
    values = array("Q")
    values.frombytes(data)
    return values


def _shared(buckets: Iterable[array[int]]) -> tuple[int, int]:
    """(values equal to another value, distinct values that repeat)."""
    cells = groups = 0
    native = native_module()
    for bucket in buckets:
        if native is not None:
            # Sorted and counted in native code (a set and a Counter here cost ~1 µs a value).
            shared, repeated = native.count_shared(bucket.tobytes())
            cells, groups = cells + shared, groups + repeated
            continue
        # Equal values always fall in the same bucket; most buckets hold none.
        if len(set(bucket)) == len(bucket):
            continue
        for count in Counter(bucket).values():
            if count > 1:
                cells, groups = cells + count, groups + 1
    return cells, groups


def shared_across_spills(spills: Sequence[DuplicateSpill],
                         buckets: range = range(DUPLICATE_BUCKETS)) -> tuple[int, int, int]:
    """:meth:`DuplicateCounter.result` over the cells of several counters at once, exactly:
    equal values fall in the same bucket in every spill, so each bucket is read from all of
    them together (a transient 1/251 of the values). ``buckets`` limits the work to some
    buckets (the counts of disjoint bucket ranges add up)."""
    files = [spill.path.open("rb") for spill in spills]
    try:
        sources = [(file, spill.places) for file, spill in zip(files, spills, strict=True)]
        iv_cells, iv_groups = _shared(_bucket_values(sources, b, False) for b in buckets)
        ct_cells, _ = _shared(_bucket_values(sources, b, True) for b in buckets)
    finally:
        for file in files:
            file.close()
    return iv_cells, iv_groups, ct_cells



@dataclass(frozen=True)
class FernetColumnScan:
    """One column's cells judged as Fernet tokens under the key ring.

    Attributes:
        column: ``table.column``.
        rows: cells looked at.
        valid: cells that parse, whose HMAC verifies under a key of the ring and whose
            plaintext's PKCS#7 padding is correct under that key.
        failures: failure reason (:class:`~harness.formats.fernet.FernetFailure` value)
            → number of cells.
        examples: up to :data:`EXAMPLES` failing rows as ``row <id>: <reason>``.
        keys_used: key label → number of cells it verifies.
        by_platform: platform → ``{"rows": n, "valid": n}`` when the table says
            which platform each row belongs to (empty otherwise).
        badly_padded: up to :data:`EXAMPLES` of the rows whose token is authentic (its
            HMAC verifies under the ring) but badly padded, as ``row <id>`` (with
            `` (<platform>)`` when split), in the order read; their number is
            ``failures["bad_padding"]``.
        engine: which engine judged the cells in bulk (``native`` or ``python``, see
            :mod:`harness.formats.fernet_engine`; ``native+python`` if parts differed). Not
            compared: two scans that say the same of every cell are equal, whichever judged.
    """

    column: str
    rows: int
    valid: int
    failures: dict[str, int]
    examples: tuple[str, ...]
    keys_used: dict[str, int]
    by_platform: dict[str, dict[str, int]] = field(default_factory=dict)
    badly_padded: tuple[str, ...] = ()
    engine: str = field(default="python", compare=False)


@dataclass(frozen=True)
class FernetCounts:
    """A :class:`FernetTally`'s counts, as plain data (what a worker process hands back).

    Attributes:
        rows, bad: part → rows seen, rows not valid.
        examples: part → up to :data:`EXAMPLES` failing rows.
        badly_padded: up to :data:`EXAMPLES` authentic but badly padded rows.
        failures: reason → cells.
        per_key: cells verified by each key of the ring, in ring order.
        engine: which engine judged the cells in bulk.
    """

    rows: dict[str, int]
    bad: dict[str, int]
    examples: dict[str, list[str]]
    badly_padded: list[str]
    failures: dict[str, int]
    per_key: list[int]
    engine: str = "python"


def row_id(value: Any) -> Any:
    """A row id as a message shows it (COPY hands ids over as the bytes of their text; a row
    whose key is NULL reads "id NULL", as the key-range reads name it)."""
    if value is None:
        return "id NULL"
    return value.decode("ascii", "replace") if isinstance(value, bytes) else value


def _named_part(parts: Sequence[str]) -> Callable[[Any], str]:
    """A row's part: the value (text, or stored bytes) if it names one of the parts before
    the last, else the last (``other``)."""
    named, last = frozenset(parts[:-1]), parts[-1]

    def part_of(value: Any) -> str:
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        return text if text in named else last

    return part_of


class FernetTally:
    """One column's Fernet judgement, fed in batches, split by platform where rows say it.

    Valid tokens go through :meth:`FernetRingVerifier.accept` in bulk (HMAC, then
    padding, for every cell); only the rows it hands back are judged one by one
    (for their reason). Each part
    (platform) keeps its own row counts and examples; the whole column its
    failure counts, key counts and the cells' fingerprints for the
    :class:`DuplicateCounter`.

    Attributes:
        keys: the key ring.
        parts: the parts rows are counted in, in the order evidence names them;
            ``("",)`` for a column that is not split.
        engine: which engine judges the cells in bulk (``python``, or ``native`` when its
            caller feeds :meth:`add_accepted` from a native block judge).
    """

    def __init__(self, keys: Sequence[FernetKey], *, now: float, max_clock_skew_s: float,
                 duplicates: DuplicateCounter, parts: Sequence[str] = ("",),
                 part_of: Callable[[Any], str] | None = None, engine: str = "python") -> None:
        self.keys = tuple(keys)
        self.parts = tuple(parts)
        self.engine = engine
        verifier = FernetRingVerifier(keys, now=now, max_clock_skew_s=max_clock_skew_s)
        self._accept, self._verify = verifier.accept, verifier.verify
        self._duplicates = duplicates
        self._part_of = part_of or _named_part(self.parts)
        self._rows = dict.fromkeys(self.parts, 0)
        self._bad = dict.fromkeys(self.parts, 0)
        self._examples: dict[str, list[str]] = {part: [] for part in self.parts}
        self._badly_padded: list[str] = []
        self._failures: Counter[str] = Counter()
        self._per_key = [0] * len(self.keys)
        # The engines of the tallies absorbed (none yet: this tally's own).
        self._engines: set[str] = set()

    def add(self, rows: Sequence[Sequence[Any]], value_at: int = 1,
            part_at: int | None = None) -> None:
        """Judge rows whose first item is the row id, item ``value_at`` the cell and item
        ``part_at`` (if any) what ``part_of`` names the row's part by.

        Never raises on any value.
        """
        fingerprints = bytearray()
        rest = self._accept(rows, value_at, self._per_key, fingerprints)
        part_of, whole = self._part_of, self.parts[-1]
        if part_at is None:
            self._rows[whole] += len(rows)
        else:
            for value, count in Counter(row[part_at] for row in rows).items():
                self._rows[part_of(value)] += count
        for row in rest:
            try:
                index, iv, ciphertext = self._verify(row[value_at])
            except FernetTokenError as error:
                part = part_of(row[part_at]) if part_at is not None else whole
                self._failures[error.reason.value] += 1
                self._bad[part] += 1
                if len(self._examples[part]) < EXAMPLES:
                    self._examples[part].append(f"row {row_id(row[0])}: {error.reason.value}")
                if error.reason is FernetFailure.BAD_PADDING \
                        and len(self._badly_padded) < EXAMPLES:
                    self._badly_padded.append(f"row {row_id(row[0])}"
                                              + (f" ({part})" if part else ""))
                continue
            self._per_key[index] += 1
            fingerprints += fingerprint(iv, ciphertext)
        self._duplicates.add_fingerprints(fingerprints)

    def add_accepted(self, part_rows: Sequence[int], per_key: Sequence[int],
                     fingerprints: bytes) -> None:
        """Count rows whose cell another engine accepted as valid: ``part_rows[i]`` rows of
        part ``i`` (in :attr:`parts` order), ``per_key[k]`` cells verified by key ``k``, and
        their fingerprints end to end."""
        for part, count in zip(self.parts, part_rows, strict=True):
            self._rows[part] += count
        self._per_key = [a + b for a, b in zip(self._per_key, per_key, strict=True)]
        if fingerprints:
            self._duplicates.add_fingerprints(fingerprints)

    def counts(self) -> FernetCounts:
        """What the tally has counted so far, to hand to another process's :meth:`absorb`."""
        return FernetCounts(dict(self._rows), dict(self._bad),
                            {part: list(e) for part, e in self._examples.items()},
                            list(self._badly_padded), dict(self._failures), list(self._per_key),
                            self.engine)

    def absorb(self, counts: FernetCounts) -> None:
        """Add the counts of rows another tally judged (over the same ring and parts); rows
        absorbed later come after these in examples, which stay the first :data:`EXAMPLES`."""
        for part in self.parts:
            self._rows[part] += counts.rows.get(part, 0)
            self._bad[part] += counts.bad.get(part, 0)
            room = EXAMPLES - len(self._examples[part])
            self._examples[part] += counts.examples.get(part, [])[:max(0, room)]
        self._badly_padded += counts.badly_padded[:max(0, EXAMPLES - len(self._badly_padded))]
        self._failures.update(counts.failures)
        self._per_key = [a + b for a, b in zip(self._per_key, counts.per_key, strict=True)]
        self._engines.add(counts.engine)

    def scan(self, column: str) -> FernetColumnScan:
        engine = "+".join(sorted(self._engines)) or self.engine
        keys_used: Counter[str] = Counter()
        for key, count in zip(self.keys, self._per_key, strict=True):
            if count:
                keys_used[key.label] += count
        rows, bad = sum(self._rows.values()), sum(self._bad.values())
        if self.parts == ("",):
            return FernetColumnScan(column, rows, rows - bad, dict(self._failures),
                                    tuple(self._examples[""]), dict(keys_used),
                                    badly_padded=tuple(self._badly_padded), engine=engine)
        examples = [f"{e} ({part})" for part in self.parts for e in self._examples[part]]
        return FernetColumnScan(
            column, rows, rows - bad, dict(self._failures), tuple(examples[:EXAMPLES]),
            dict(keys_used),
            {part: {"rows": n, "valid": n - self._bad[part]}
             for part, n in self._rows.items() if n},
            tuple(self._badly_padded), engine)


def add_token_block(block: bytes, tallies: Sequence[FernetTally], *, part_at: int | None,
                    judge: CopyBlockJudge | None = None) -> None:
    """Judge a block of whole COPY text lines ``id[<TAB>part]<TAB>token...``, one tally per
    token column (``part_at``: 1 when the lines have a part field, else None).

    With a native ``judge``, it accepts the lines whose every cell is valid (their counts
    and fingerprints go straight to the tallies) and hands back the rest, which the tallies
    then judge row by row for their reasons; without one, the tallies judge every row.
    Never raises on well-formed server output."""
    if judge is not None:
        part_rows, per_key, fingerprints, block = judge.judge(block)
        for tally, key_counts, prints in zip(tallies, per_key, fingerprints, strict=True):
            tally.add_accepted(part_rows, key_counts, prints)
        if not block:
            return
    rows = copy_text_rows(block)
    for value_at, tally in enumerate(tallies, 1 if part_at is None else part_at + 1):
        tally.add(rows, value_at, part_at)


def scan_fernet_cells(rows: Iterable[tuple[Any, Any]], column: str, keys: Sequence[FernetKey],
                      *, now: float, max_clock_skew_s: float,
                      duplicates: DuplicateCounter) -> FernetColumnScan:
    """Judge every ``(row id, value)`` of a column; never raises on any value."""
    tally = FernetTally(keys, now=now, max_clock_skew_s=max_clock_skew_s, duplicates=duplicates)
    rows = iter(rows)
    while batch := list(itertools.islice(rows, TOKEN_BATCH_ROWS)):
        tally.add(batch)
    return tally.scan(column)


@dataclass(frozen=True)
class HashColumnScan:
    """One column's cells classified as stored hashes.

    Attributes:
        column: ``table.column``.
        rows: cells looked at.
        schemes: scheme → number of cells.
        costs: bcrypt cost → number of cells.
        examples: up to :data:`EXAMPLES` rows that are not bcrypt, as ``row <id>: <scheme>``.
        cost_examples: up to :data:`EXAMPLES` bcrypt rows with another cost than asked for.
        read: how the column was read and classified, for the evidence (e.g. ``joined pages, 2
            readers, native lines``). Not compared: two scans that say the same of every row
            are equal, however read.
    """

    column: str
    rows: int
    schemes: dict[str, int]
    costs: dict[int, int]
    examples: tuple[str, ...]
    cost_examples: tuple[str, ...] = ()
    read: str = field(default="", compare=False)


class HashTally:
    """One column's stored hashes classified, fed in batches of ``(row id, value)`` or in
    blocks of COPY text lines ``id<TAB>value``; tallies of key ranges add up (:meth:`absorb`).

    Attributes:
        expected_cost: the bcrypt cost asked for (rows with another are named as examples).
        read: how the rows were read (see :attr:`HashColumnScan.read`).
    """

    def __init__(self, expected_cost: int | None = None, read: str = "") -> None:
        self.expected_cost = expected_cost
        self.read = read
        self.rows = 0
        self.schemes: Counter[str] = Counter()
        self.costs: Counter[int] = Counter()
        self.examples: list[str] = []
        self.cost_examples: list[str] = []
        # A line of well-formed bcrypt at the expected cost; a block of nothing else, in one match.
        clean = (rb"[0-9]+\t\$2[aby]\$" + (b"%02d" % expected_cost if expected_cost is not None
                                            else rb"[0-9][0-9]") + rb"\$[./A-Za-z0-9]{53}\n")
        self._clean_block = re.compile(rb"(?:" + clean + rb")*")
        self._clean_lines = re.compile(rb"(?m)^" + clean)

    def add_copy_block(self, block: bytes) -> None:
        """Classify a block of whole COPY text lines ``id<TAB>hash`` (the session's encoding:
        UTF-8). Lines of well-formed bcrypt at the expected cost are counted in bulk, the rest
        one by one, in order (a chunk of 15,680 rows holding one plaintext value: 6 ms instead
        of 50 ms, measured)."""
        expected_cost = self.expected_cost
        if expected_cost is not None:
            if self._clean_block.fullmatch(block) is not None:
                count, block = block.count(b"\n"), b""
            else:
                block, count = self._clean_lines.subn(b"", block)
            if count:
                self.rows += count
                self.schemes[HashScheme.BCRYPT.value] += count
                self.costs[expected_cost] += count
            if not block:
                return
        rows = copy_text_rows(block)
        self.add([(row[0], None if row[1] is None else row[1].decode("utf-8", "replace"))
                  for row in rows])

    def add(self, batch: Sequence[tuple[Any, Any]]) -> None:
        """Classify ``(row id, value)`` rows; never raises on any value."""
        # A batch of nothing but well-formed bcrypt is counted at once, unless it
        # holds a row with another cost that should be named as an example.
        expected_cost = self.expected_cost
        histogram = bcrypt_cost_histogram([value for _, value in batch])
        if histogram is not None and (expected_cost is None or len(self.cost_examples) >= EXAMPLES
                                      or set(histogram) <= {expected_cost}):
            self.rows += len(batch)
            if batch:
                self.schemes[HashScheme.BCRYPT.value] += len(batch)
            self.costs.update(histogram)
            return
        for rid, value in batch:
            self.rows += 1
            kind = classify_stored_hash(value)
            self.schemes[kind.scheme.value] += 1
            if kind.cost is not None:
                self.costs[kind.cost] += 1
                if expected_cost is not None and kind.cost != expected_cost \
                        and len(self.cost_examples) < EXAMPLES:
                    self.cost_examples.append(f"row {row_id(rid)}: cost {kind.cost}")
            elif len(self.examples) < EXAMPLES:
                self.examples.append(f"row {row_id(rid)}: {kind.scheme.value}")

    def absorb(self, other: HashTally) -> None:
        """Add another tally's rows (examples after this one's, the first :data:`EXAMPLES`)."""
        self.rows += other.rows
        self.schemes.update(other.schemes)
        self.costs.update(other.costs)
        self.examples += other.examples[:max(0, EXAMPLES - len(self.examples))]
        self.cost_examples += other.cost_examples[:max(0, EXAMPLES - len(self.cost_examples))]

    def __getstate__(self) -> dict[str, Any]:
        # The compiled patterns are remade on arrival (they are the cost's).
        return {k: v for k, v in self.__dict__.items() if k not in ("_clean_block", "_clean_lines")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["expected_cost"], state.get("read", ""))  # type: ignore[misc]
        self.__dict__.update(state)

    def scan(self, column: str) -> HashColumnScan:
        return HashColumnScan(column, self.rows, dict(self.schemes), dict(self.costs),
                              tuple(self.examples), tuple(self.cost_examples), self.read)


def scan_hash_cells(rows: Iterable[tuple[Any, Any]], column: str,
                    expected_cost: int | None = None) -> HashColumnScan:
    """Classify every ``(row id, value)``; never raises on any value."""
    tally = HashTally(expected_cost)
    remaining = iter(rows)
    while batch := list(itertools.islice(remaining, HASH_BATCH_ROWS)):
        tally.add(batch)
    return tally.scan(column)
