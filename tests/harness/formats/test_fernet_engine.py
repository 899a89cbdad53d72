"""The native Fernet engine against the Python path and ``cryptography``'s Fernet, cell by cell.

The native engine only ever accepts whole lines; whatever it hands back the Python path
judges. So for any block both engines must say the same of every cell (counts, reasons,
examples, keys, platforms, fingerprints), every line it accepts must be one whose every
cell the reference (:func:`validate_fernet_token`) finds valid under the same key, and
what ``cryptography`` decrypts must be exactly what is counted valid.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.column_scans import DuplicateCounter, FernetCounts, FernetTally, add_token_block
from harness.formats import fernet_engine
from harness.formats.copy_text import copy_text_rows
from harness.formats.fernet import (
    FernetFailure,
    FernetKey,
    FernetRingVerifier,
    FernetTokenError,
    encrypt_fernet_token,
    fingerprint,
)
from harness.formats.fernet_engine import STALE, CopyBlockJudge, block_judge, engine_name
from harness.policy import load_policy
from harness.probes import range_workers

needs_native = pytest.mark.skipif(
    fernet_engine.native_module() is None,
    reason="no native engine here (./dev install builds it where cargo is), or "
           f"{fernet_engine.ENGINE_ENV}=python")

NEW = FernetKey(b"N" * 32, "votriz/token-encryption/v2")
OLD = FernetKey(b"O" * 32, "votriz/token-encryption/v1")
STRANGER = FernetKey(b"S" * 32, "not in the ring")
RING = (NEW, OLD)
NOW = 1_900_000_000.5
SKEW = 60
PARTS = ("slack", "discord", "other")


class _Prints(DuplicateCounter):
    """A duplicate counter that keeps every fingerprint it is given, to compare them."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[bytes] = []

    def add_fingerprints(self, data: bytes | bytearray) -> None:
        self.seen += [bytes(data[at:at + 16]) for at in range(0, len(data), 16)]


def _judged(block: bytes, judge: CopyBlockJudge | None, *, parts: tuple[str, ...] | None,
            columns: int) -> list[tuple[object, list[bytes]]]:
    """Each column's scan and its fingerprints (sorted), the block judged by ``judge`` (native)
    or by the Python path alone (None)."""
    prints = [_Prints() for _ in range(columns)]
    tallies = [FernetTally(RING, now=NOW, max_clock_skew_s=SKEW, duplicates=p,
                           parts=parts or ("",)) for p in prints]
    add_token_block(block, tallies, part_at=1 if parts else None, judge=judge)
    return [(t.scan("channels.token"), sorted(p.seen)) for t, p in zip(tallies, prints, strict=True)]


def _native(parts: tuple[str, ...] | None, columns: int, **when: float) -> CopyBlockJudge:
    judge = block_judge(RING, now=when.get("now", NOW), max_clock_skew_s=when.get("skew", SKEW),
                        ttl_s=when.get("ttl"), parts=parts, columns=columns)
    assert judge is not None
    return judge


def _seal(body: bytes, key: FernetKey) -> bytes:
    """``body`` (version to ciphertext) with the HMAC of ``key``, as a column holds it."""
    tag = hmac.new(key.signing_key, body, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(body + tag)


def _encrypted(plain_blocks: bytes, key: FernetKey, stamp: int, iv: bytes = b"i" * 16) -> bytes:
    """An authentic token whose plaintext blocks are given as they are (no padding added)."""
    encryptor = Cipher(algorithms.AES(key.encryption_key), modes.CBC(iv)).encryptor()
    return _seal(b"\x80" + stamp.to_bytes(8, "big") + iv + encryptor.update(plain_blocks)
                 + encryptor.finalize(), key)


def _token(key: FernetKey, size: int = 20, stamp: float = NOW - 1000) -> bytes:
    return encrypt_fernet_token(b"p" * size, key, now=stamp).encode("ascii")


def _non_canonical(token: bytes) -> bytes:
    """The same bytes, with the unused low bits of the last base64 character set."""
    body = token.rstrip(b"=")
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(body[-1:]) | 1
    return body[:-1] + alphabet[last:last + 1] + token[len(body):]


def _catalogue() -> list[bytes]:
    """One cell of every kind a column may hold, as COPY text writes it."""
    stamp = int(NOW)
    valid = _token(NEW)
    return [
        valid, _token(OLD), _token(NEW, 0), _token(OLD, 200),
        # Time: the allowed skew's edge is valid, one second past it is not.
        _token(NEW, stamp=stamp + SKEW), _token(NEW, stamp=stamp + SKEW + 1), _token(NEW, stamp=0),
        b"\\N", b"",                                              # missing
        b"plain-oauth-token", valid.replace(b"-", b"+").replace(b"_", b"/"),
        b"\xc3\xa9" + valid[2:], valid + b"=", valid[:-1], b"QQ==",  # not base64
        b"ab\\\\cd", b"ab\\tcd", valid[:10] + b"\\n" + valid[12:],   # escaped
        _non_canonical(valid),
        base64.urlsafe_b64encode(b"\x80" + bytes(40)),            # too short
        _seal(b"\x81" + bytes(8) + bytes(16) + bytes(16), NEW),   # bad version
        _seal(b"\x80" + stamp.to_bytes(8, "big") + bytes(16) + bytes(17), NEW),  # bad length
        _token(STRANGER), valid[:20] + (b"A" if valid[20:21] != b"A" else b"B") + valid[21:],
        _encrypted(b"q" * 15 + b"\x00", NEW, stamp), _encrypted(b"q" * 14 + b"\x01\x02", OLD, stamp),
        _encrypted(b"q" * 16 + b"\x11" * 16, NEW, stamp),         # bad padding
        _encrypted(b"\x10" * 16, OLD, stamp), _encrypted(b"q" * 31 + b"\x01", NEW, stamp),
    ]


def _block(cells: list[bytes], *, parts: bool, columns: int) -> bytes:
    """Every cell in every column, beside valid cells, over every platform (and NULL)."""
    platforms = [b"slack", b"discord", b"teams", b"\\N", b"sl\\\\ack", "é".encode()]
    filler = _token(NEW, 5)
    lines = []
    for row, cell in enumerate(cells * columns, 1):
        line = [b"%d" % row] + ([platforms[row % len(platforms)]] if parts else [])
        line += [cell if column == (row - 1) // len(cells) else filler for column in range(columns)]
        lines.append(b"\t".join(line))
    return b"\n".join(lines) + b"\n"


def _pyca_valid(cell: bytes) -> int | None:
    """The position of the first key of the ring under which ``cryptography`` decrypts the
    cell as COPY wrote it (NULL and escapes read first), else None."""
    value = copy_text_rows(b"1\t" + cell + b"\n")[0][1]
    if not value:
        return None
    for index, key in enumerate(RING):
        try:
            # Any age (no time-to-live); pyca's skew is 60 s of the whole seconds, as SKEW here.
            Fernet(key.text()).decrypt_at_time(value, 10**15, int(NOW))
        except InvalidToken:
            continue
        return index
    return None


@needs_native
@pytest.mark.parametrize("parts", [PARTS, None], ids=["by platform", "one part"])
@pytest.mark.parametrize("columns", [1, 2])
def test_every_kind_of_cell_is_judged_alike_by_both_engines_and_pyca(
        parts: tuple[str, ...] | None, columns: int) -> None:
    # Given a block with every kind of cell in every token column, beside valid cells
    cells = _catalogue()
    block = _block(cells, parts=parts is not None, columns=columns)
    # When the native engine judges it (handing back what it does not accept) and the
    # Python path judges it alone
    native = _judged(block, _native(parts, columns), parts=parts, columns=columns)
    python = _judged(block, None, parts=parts, columns=columns)
    # Then every count, reason, example, key, platform and fingerprint is the same
    assert native == python
    # And what is valid is exactly what cryptography decrypts, key by key, but for the
    # encodings its lax base64 reads and the audit's strict URL-safe base64 refuses
    # (the standard alphabet, a '=' too many)
    verdicts = [_pyca_valid(cell) for cell in cells]
    verifier = FernetRingVerifier(RING, now=NOW, max_clock_skew_s=SKEW)
    for at, cell in enumerate(cells):
        try:
            verifier.verify(copy_text_rows(b"1\t" + cell + b"\n")[0][1])
        except FernetTokenError as error:
            if error.reason is FernetFailure.NOT_BASE64:
                verdicts[at] = None
    assert verdicts.count(None) >= 12
    filler_rows = len(cells) * (columns - 1)
    for scan, _ in native:
        assert scan.valid == filler_rows + sum(v is not None for v in verdicts)  # type: ignore[attr-defined]
        assert scan.keys_used == {  # type: ignore[attr-defined]
            NEW.label: filler_rows + verdicts.count(0), **({OLD.label: verdicts.count(1)}
                                                           if 1 in verdicts else {})}
    assert {"missing", "not_base64", "too_short", "bad_version", "bad_length",
            "future_timestamp", "bad_hmac", "bad_padding"} <= set(native[0][0].failures)  # type: ignore[attr-defined]


@needs_native
def test_lines_it_cannot_read_plainly_are_handed_back_untouched_in_order() -> None:
    valid = _token(NEW)
    lines = [
        b"1\tslack\t" + valid + b"\t" + valid,        # accepted
        b"2\tslack\t" + valid,                        # truncated: a field short
        b"3\tslack\t" + valid + b"\t" + valid + b"\tx",  # a field too many
        b"4\t\\N\t" + valid + b"\t" + valid,          # NULL platform
        b"5\tslack\t" + valid + b"\t" + valid[:-3],   # truncated token
        b"",                                          # an empty line
        b"6\t\xff\t" + valid + b"\t" + valid,         # a platform that is not UTF-8
        b"7\tdiscord\t" + valid + b"\t" + valid,      # accepted, and no final newline
    ]
    judge = _native(PARTS, 2)
    part_rows, per_key, prints, rest = judge.judge(b"\n".join(lines))
    assert part_rows == [1, 1, 0]
    assert per_key == [[2, 0], [2, 0]]
    parsed = base64.urlsafe_b64decode(valid)
    assert prints == [fingerprint(parsed[9:25], parsed[25:-32]) * 2] * 2
    assert rest == b"".join(line + b"\n" for line in lines[1:-1])
    assert judge.judge(b"") == ([0, 0, 0], [[0, 0], [0, 0]], [b"", b""], b"")


@needs_native
@pytest.mark.parametrize("offset", [-1001, -1000, -999, 0, 59, 60, 61])
@pytest.mark.parametrize("now", [1_000_000.0, 1_000_000.5, 1_000_000.999])
def test_time_boundaries_and_the_ttl_are_judged_as_the_ring_verifier_judges(offset: int,
                                                                            now: float) -> None:
    # Given a token stamped around the edges of the skew (60 s) and of a 1,000 s time-to-live
    cell = _token(OLD, stamp=int(now) + offset)
    verifier = FernetRingVerifier(RING, now=now, ttl_s=1000, max_clock_skew_s=SKEW)
    try:
        expected: object = verifier.verify(cell)[0]
    except FernetTokenError as error:
        expected = error.reason
    # When the native engine judges it with the same clock, skew and time-to-live
    _, per_key, _, rest = _native(None, 1, now=now, skew=SKEW, ttl=1000).judge(b"1\t" + cell)
    # Then it accepts exactly what the verifier finds valid, under the same key
    assert (per_key[0].index(1) if not rest else None) == (expected if isinstance(expected, int)
                                                           else None)


def _fields() -> st.SearchStrategy[bytes]:
    valid = [_token(NEW), _token(OLD, 50), _encrypted(b"q" * 15 + b"\x00", NEW, int(NOW))]
    return st.one_of(
        st.sampled_from(valid),
        st.sampled_from([b"\\N", b"", b"slack", b"discord", b"teams", b"\\\\", b"\\t"]),
        st.binary(max_size=90).map(lambda b: b.replace(b"\n", b"").replace(b"\t", b"")),
        # A valid token with one byte changed (URL-safe, standard-only, padding, odd bytes).
        st.tuples(st.sampled_from(valid), st.integers(0, 120),
                  st.sampled_from([b"A", b"+", b"/", b"=", b"\\", b"\xff", b"-", b"_", b" "])).map(
            lambda t: t[0][:t[1]] + t[2] + t[0][t[1] + 1:]),
    )


@needs_native
@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10**6), _fields(), _fields(), _fields()), max_size=25),
       st.booleans())
def test_any_lines_of_the_right_width_are_judged_as_the_python_path_judges(
        rows: list[tuple[int, bytes, bytes, bytes]], parts: bool) -> None:
    # Given lines id, platform (or not), two token cells of anything at all
    block = b"".join(b"\t".join([b"%d" % rid, *((platform,) if parts else ()), a, b]) + b"\n"
                     for rid, platform, a, b in rows)
    named = PARTS if parts else None
    # Then both engines say the same of every cell
    assert _judged(block, _native(named, 2), parts=named, columns=2) == \
        _judged(block, None, parts=named, columns=2)


@needs_native
@settings(max_examples=1500, deadline=None)
@given(st.one_of(st.binary(max_size=400),
                 st.lists(_fields(), max_size=12).map(lambda f: b"\t".join(f)),
                 st.lists(st.lists(_fields(), min_size=3, max_size=3).map(
                     lambda f: b"\t".join(f)), max_size=6).map(lambda lines: b"\n".join(lines))),
       st.sampled_from([PARTS, None]))
def test_any_bytes_at_all_never_crash_and_only_valid_lines_are_accepted(
        block: bytes, parts: tuple[str, ...] | None) -> None:
    # When the native engine judges arbitrary bytes, line by line
    judge = _native(parts, 1)
    verifier = FernetRingVerifier(RING, now=NOW, max_clock_skew_s=SKEW)
    lines = block.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()
    handed_back = []
    for line in lines:
        part_rows, per_key, prints, rest = judge.judge(line + b"\n")
        if rest:
            # Then a line handed back is handed back whole and counted nowhere
            assert rest == line + b"\n" and sum(part_rows) == 0 and per_key == [[0, 0]]
            handed_back.append(rest)
            continue
        # Then a line accepted is one whose cell the reference finds valid, under that key
        fields = copy_text_rows(line + b"\n")[0]
        assert len(fields) == (3 if parts else 2) and b"\\" not in line
        index, iv, ciphertext = verifier.verify(fields[-1])
        assert per_key == [[int(index == 0), int(index == 1)]]
        assert prints == [fingerprint(iv, ciphertext)] and sum(part_rows) == 1
    # And the whole block at once hands back the same lines, in order
    assert judge.judge(block)[3] == b"".join(handed_back)


def test_the_python_engine_can_be_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(fernet_engine.ENGINE_ENV, "python")
    assert engine_name() == "python"
    assert block_judge(RING, now=NOW, max_clock_skew_s=SKEW) is None


def test_the_engine_is_said_and_not_compared() -> None:
    # Given tallies of key ranges judged by different engines
    def tally(engine: str) -> FernetTally:
        return FernetTally(RING, now=NOW, max_clock_skew_s=SKEW, duplicates=DuplicateCounter(),
                           engine=engine)

    merged, native, python = tally("python"), tally("native"), tally("python")
    merged.absorb(native.counts())
    assert merged.scan("c").engine == "native"
    merged.absorb(python.counts())
    # Then the scan says both, and equals a scan that says the same of every cell
    assert merged.scan("c").engine == "native+python"
    assert merged.scan("c") == python.scan("c")
    assert tally("python").scan("c").engine == "python"


@needs_native
@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([bytes(8), b"\x01" * 8, b"\xff" * 8, b"ab" * 4]),
                          st.binary(min_size=8, max_size=8)), max_size=300),
       st.sampled_from([1, 5, 2_000_000]))
def test_native_duplicate_counts_are_the_python_counts(halves: list[tuple[bytes, bytes]],
                                                       memory_cells: int) -> None:
    # Given fingerprints with repeated first halves, some repeated whole
    data = b"".join(a + b for a, b in halves) + b"".join(a + b for a, b in halves[::3])

    def counted(engine: str) -> tuple[tuple[int, int, int], list[list[bytes]]]:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv(fernet_engine.ENGINE_ENV, engine)
            split = DuplicateCounter()
            split.add_fingerprints(data)
            buckets = [[bucket.tobytes() for bucket in half] for half in split._split_held()]
            counter = DuplicateCounter(memory_cells=memory_cells)
            for at in range(0, len(data), 48):
                counter.add_fingerprints(data[at:at + 48])
            return counter.result(), buckets

    # Then the native split and count say exactly what the Python ones say
    assert counted("native") == counted("python")


# --- a native module built from other sources than the checkout's is not used -------------


def test_the_sources_digest_is_what_sha256sum_says_of_the_crate() -> None:
    # Given the crate as checked out, hashed as an auditor would in a shell
    crate = fernet_engine.NATIVE_CRATE
    listed = subprocess.run("sha256sum Cargo.lock Cargo.toml pyproject.toml src/*.rs | sha256sum",
                            shell=True, cwd=crate, capture_output=True, text=True, check=True)
    # Then the digest the engine compares is the same
    assert fernet_engine.sources_digest() == listed.stdout.split()[0]
    assert fernet_engine.sources_digest(crate / "no such crate") is None


def test_the_native_module_is_built_from_every_file_the_digest_covers() -> None:
    # Given the files lib.rs hashes into SOURCES_DIGEST at build time (include_bytes!)
    crate = fernet_engine.NATIVE_CRATE
    source = (crate / "src" / "lib.rs").read_text(encoding="utf-8")
    built = re.findall(r'\("([^"]+)", include_bytes!\("([^"]+)"\)\)', source)
    # Then they are every source file, in sha256sum's order, each the file it names
    assert [name for name, _ in built] == fernet_engine.source_files()
    assert all((crate / "src" / path).resolve() == (crate / name).resolve()
               for name, path in built)


def _module(digest: object, interface: object = fernet_engine.INTERFACE) -> ModuleType:
    module = ModuleType("votriz_fernet_native")
    module.INTERFACE = interface  # type: ignore[attr-defined]
    if digest is not None:
        module.SOURCES_DIGEST = digest  # type: ignore[attr-defined]
    return module


def test_only_a_module_built_from_the_checkouts_sources_judges() -> None:
    checkout = "ab" * 32
    fresh = _module(checkout)
    assert fernet_engine.installed_engine(fresh, checkout) == (fresh, "native")
    # A rebuild that failed or never ran, an old build without a digest, another interface,
    # or no sources to compare with: the Python path, and the evidence says why
    for module, digest in ((_module("cd" * 32), checkout), (_module(None), checkout),
                           (_module(checkout, interface=1), checkout), (fresh, None)):
        assert fernet_engine.installed_engine(module, digest) == (None, STALE)
    assert fernet_engine.installed_engine(None, checkout) == (None, "python")


@needs_native
def test_the_installed_module_when_the_checkouts_sources_differ(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    native = importlib.import_module("votriz_fernet_native")

    # Given the module installed here, built from the checkout's sources
    assert fernet_engine.sources_digest() == native.SOURCES_DIGEST
    assert engine_name() == "native"
    # When the sources change after the build (no rebuild: the checkout's digest patched)
    monkeypatch.setattr(fernet_engine, "sources_digest", lambda crate=None: "0" * 64)
    # Then the Python path judges, and a range worker's evidence says the module is stale
    assert fernet_engine.native_module() is None and engine_name() == STALE
    assert block_judge(RING, now=NOW, max_clock_skew_s=SKEW) is None
    counts = _range_judged(monkeypatch, tmp_path)
    assert counts.engine == STALE and counts.rows == {"": 2} and counts.bad == {"": 1}


def test_a_range_worker_says_which_engine_judged(monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    counts = _range_judged(monkeypatch, tmp_path)
    assert counts.engine == engine_name() and counts.rows == {"": 2} and counts.bad == {"": 1}
    monkeypatch.setenv(fernet_engine.ENGINE_ENV, "python")
    assert _range_judged(monkeypatch, tmp_path / "python").engine == "python"


def _range_judged(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FernetCounts:
    """One range of ``channels`` judged by :func:`judge_token_range`, its ``COPY`` a block of
    two rows (one valid token, one not) handed over by a stand-in for the database."""
    block = b"1\t" + encrypt_fernet_token(b"p", NEW, now=NOW).encode("ascii") + b"\n2\tnope\n"

    class Rows:
        def __init__(self, *args: object, **kwargs: object) -> None:
            pass

        def __enter__(self) -> Rows:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def copy_rows(self, *args: object, **kwargs: object) -> Iterator[bytes]:
            yield block

    monkeypatch.setattr(range_workers, "DatabaseProbe", Rows)
    tmp_path.mkdir(parents=True, exist_ok=True)
    task = range_workers.TokenRangeTask(
        range_workers.RangeRead(None, load_policy(), 1, 2, None),  # type: ignore[arg-type]
        range_workers.TokenRing(RING, NOW, SKEW), ("",), (("channels", "access_token_enc"),),
        tmp_path / "part-0")
    counts, _ = range_workers.judge_token_range(task)
    return counts[0]
