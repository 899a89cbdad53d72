"""The column scanners at_rest streams rows into: same counts as a naive reading, flat memory.

(The judgements themselves are tested in tests/checks/at_rest/; these
tests pin the fast paths to what a straightforward implementation says.)
"""

from __future__ import annotations

import os
import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness import column_scans
from harness.column_scans import (
    DuplicateCounter,
    FernetColumnScan,
    HashColumnScan,
    scan_fernet_cells,
    scan_hash_cells,
)
from harness.formats.fernet import FINGERPRINT_BYTES, FernetKey, encrypt_fernet_token, fingerprint

KEY = FernetKey(b"k" * 32, "v1")
OTHER = FernetKey(b"o" * 32, "v2")
RING_KEY = FernetKey(b"k" * 32, "votriz/token-encryption/v1")


def _naive_shared(values: list[bytes]) -> tuple[int, int]:
    counts = Counter(values)
    return sum(n for n in counts.values() if n > 1), sum(1 for n in counts.values() if n > 1)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([bytes(16), b"\x01" * 16, b"\x00" * 8 + b"\x02" * 8,
                                           os.urandom(16), os.urandom(16)]),
                          st.sampled_from([b"a" * 16, b"b" * 32, os.urandom(16)])),
                max_size=60),
       st.sampled_from([1, 7, 2_000_000]))
def test_duplicate_counter_agrees_with_a_naive_count(cells: list[tuple[bytes, bytes]],
                                                     memory_cells: int) -> None:
    # Given cells with repeated IVs and ciphertexts, When they are counted (held in
    # memory, or written out every few cells), Then the counts are those of a plain
    # Counter over the IV prefixes and ciphertexts.
    duplicates = DuplicateCounter(memory_cells=memory_cells)
    for iv, ciphertext in cells:
        duplicates.add_fingerprints(fingerprint(iv, ciphertext))
    iv_cells, iv_groups = _naive_shared([iv[:8] for iv, _ in cells])
    ct_cells, _ = _naive_shared([ct for _, ct in cells])
    assert duplicates.result() == (iv_cells, iv_groups, ct_cells)


@pytest.mark.parametrize("memory_cells", [2_000_000, 10_000])
def test_duplicate_counter_with_many_unique_cells_and_one_fixed_iv(memory_cells: int) -> None:
    rng = random.Random(7)
    duplicates = DuplicateCounter(memory_cells=memory_cells)
    for _ in range(50_000):
        duplicates.add_fingerprints(fingerprint(rng.randbytes(16), rng.randbytes(48)))
    for i in range(3):
        duplicates.add_fingerprints(fingerprint(bytes(16), f"{i:048d}".encode()))
    assert duplicates.result() == (3, 1, 0)
    # Asking twice gives the same answer.
    assert duplicates.result() == (3, 1, 0)


def test_fernet_scan_names_keys_in_ring_order_and_counts_every_reason() -> None:
    cells = [encrypt_fernet_token(b"a", OTHER, now=1_000_000),
             encrypt_fernet_token(b"b", KEY, now=1_000_000),
             encrypt_fernet_token(b"c", KEY, now=1_000_000).encode("ascii"),
             None, "", b"\xff\xfe", "plain-token", 42, "A" * 2_000_000,
             encrypt_fernet_token(b"d", KEY, now=9_000_000)]
    scan = scan_fernet_cells(enumerate(cells, 1), "t.c", [KEY, OTHER], now=1_000_000,
                             max_clock_skew_s=300, duplicates=DuplicateCounter())
    assert (scan.rows, scan.valid) == (10, 3)
    # Keys are named in the ring's order.
    assert list(scan.keys_used.items()) == [("v1", 2), ("v2", 1)]
    assert scan.failures == {"missing": 2, "not_base64": 2, "not_text": 1, "bad_version": 1,
                             "future_timestamp": 1}
    assert scan.examples[:2] == ("row 4: missing", "row 5: missing")


SALTED = "CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW"


def _hash_scan_one_by_one(rows: list[tuple[int, object]], column: str,
                          expected_cost: int | None) -> HashColumnScan:
    """The scan as it was before batches: the batch shortcut off, one classification per row."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(column_scans, "bcrypt_cost_histogram", lambda values: None)
        return scan_hash_cells(iter(rows), column, expected_cost)


_HASH_CELLS = [f"$2b$12${SALTED}"] * 6 + [f"$2y$10${SALTED}", f"$2a$04${SALTED}", None, "",
                                          "hunter2", b"\xff", "$2b$12$short", f"$2b$12${SALTED}\n",
                                          "5f4dcc3b5aa765d61d8327deb882cf99", 7]


def test_hash_scan_one_by_one_names_each_kind_and_cost() -> None:
    scan = _hash_scan_one_by_one(list(enumerate(_HASH_CELLS, 1)), "users.password_hash", 12)
    assert scan == HashColumnScan(
        "users.password_hash", 16,
        {"bcrypt": 8, "missing": 2, "plaintext_like": 1, "not_text": 2, "malformed_bcrypt": 2,
         "unsalted_digest": 1},
        {12: 6, 10: 1, 4: 1},
        ("row 9: missing", "row 10: missing", "row 11: plaintext_like", "row 12: not_text",
         "row 13: malformed_bcrypt", "row 14: malformed_bcrypt", "row 15: unsalted_digest",
         "row 16: not_text"),
        ("row 7: cost 10", "row 8: cost 4"))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_HASH_CELLS), max_size=80), st.sampled_from([None, 12, 10]),
       st.sampled_from([1, 3, 7, 10_000]))
def test_hash_scan_in_batches_says_what_one_by_one_says(values: list[object], cost: int | None,
                                                        batch: int) -> None:
    rows = list(enumerate(values, 1))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(column_scans, "HASH_BATCH_ROWS", batch)
        scan = scan_hash_cells(iter(rows), "users.password_hash", cost)
    expected = _hash_scan_one_by_one(rows, "users.password_hash", cost)
    assert scan == expected
    assert list(scan.schemes) == list(expected.schemes) and list(scan.costs) == list(expected.costs)


def test_hash_scan_of_a_clean_million_rows_is_one_histogram() -> None:
    rows = ((i, f"$2b$12${SALTED}") for i in range(1_000_000))
    scan = scan_hash_cells(rows, "users.password_hash", 12)
    assert (scan.rows, scan.schemes, scan.costs) == (1_000_000, {"bcrypt": 1_000_000}, {12: 1_000_000})


def test_duplicate_counter_holds_at_most_its_memory_cells() -> None:
    # Given a counter that may hold 1000 cells, When 25,000 are added (five repeated)
    duplicates = DuplicateCounter(memory_cells=1000)
    for i in range(25_000):
        duplicates.add_fingerprints(fingerprint((i % 24_995).to_bytes(8, "big") + bytes(8),
                                                os.urandom(32)))
        assert len(duplicates._held) < 1000 * FINGERPRINT_BYTES
    # Then it still counts every shared IV, and gives its temporary file back
    assert duplicates.result() == (10, 5, 0)
    assert duplicates._spill is None


def _scan(values: list[object], keys: list[FernetKey] = [RING_KEY],  # noqa: B006
          duplicates: DuplicateCounter | None = None) -> FernetColumnScan:
    return scan_fernet_cells(enumerate(values, 1), "channels.access_token_enc", keys,
                             now=2_000_000, max_clock_skew_s=300,
                             duplicates=duplicates or DuplicateCounter())


def test_fernet_scan_counts_garbage_by_reason_without_crashing() -> None:
    good = encrypt_fernet_token(b"t", RING_KEY, now=1_000_000)
    scan = _scan([good, "plain-token", None, b"\xff\xfe", 42,
                  encrypt_fernet_token(b"t", OTHER, now=1_000_000), "A" * 2_000_000])
    assert scan.rows == 7 and scan.valid == 1
    assert scan.failures == {"not_base64": 2, "missing": 1, "not_text": 1, "bad_hmac": 1,
                             "bad_version": 1}
    assert scan.examples[0] == "row 2: not_base64"
    assert scan.keys_used == {"votriz/token-encryption/v1": 1}


def test_duplicate_counter_sees_a_fixed_iv() -> None:
    duplicates = DuplicateCounter()
    iv = bytes(16)
    cells = [encrypt_fernet_token(f"t{i}".encode(), RING_KEY, now=1_000_000, iv=iv) for i in range(4)]
    cells.append(encrypt_fernet_token(b"x", RING_KEY, now=1_000_000))
    _scan(cells, duplicates=duplicates)
    assert duplicates.result() == (4, 1, 0)


def _authentic_badly_padded(key: FernetKey, last_byte: int, iv: bytes) -> str:
    """A token whose HMAC verifies under ``key`` but whose one plaintext block ends in
    ``last_byte`` with no padding (AES-CBC by hand, then the spec's HMAC)."""
    import base64
    import hashlib
    import hmac

    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    encryptor = Cipher(algorithms.AES(key.encryption_key), modes.CBC(iv)).encryptor()
    body = (b"\x80" + (1_000_000).to_bytes(8, "big") + iv
            + encryptor.update(b"q" * 15 + bytes([last_byte])) + encryptor.finalize())
    tag = hmac.new(key.signing_key, body, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(body + tag).decode("ascii")


@pytest.mark.parametrize("batch", [3, 5_000])
def test_fernet_scan_counts_authentic_but_badly_padded_cells_by_row(batch: int) -> None:
    # Given a column of valid tokens with three authentic tokens whose padding is broken,
    # one of them sharing its IV with a valid token, read in batches of 3 or all at once
    good = [encrypt_fernet_token(f"t{i}".encode(), RING_KEY, now=1_000_000) for i in range(9)]
    shared_iv = bytes(range(16))
    values: list[object] = list(good)
    values[1] = _authentic_badly_padded(RING_KEY, 0x00, shared_iv)
    values[4] = _authentic_badly_padded(RING_KEY, 0x11, os.urandom(16))
    values[7] = _authentic_badly_padded(RING_KEY, 0x41, os.urandom(16))
    values.append(encrypt_fernet_token(b"ok", RING_KEY, now=1_000_000, iv=shared_iv))
    duplicates = DuplicateCounter()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(column_scans, "TOKEN_BATCH_ROWS", batch)
        scan = _scan(values, duplicates=duplicates)
    # Then they are not valid, are counted as bad_padding and named by row, in row order,
    # never by value; only valid cells count towards keys and shared IVs
    assert (scan.rows, scan.valid) == (10, 7)
    assert scan.failures == {"bad_padding": 3}
    assert scan.examples == ("row 2: bad_padding", "row 5: bad_padding", "row 8: bad_padding")
    assert scan.badly_padded == ("row 2", "row 5", "row 8")
    assert scan.keys_used == {"votriz/token-encryption/v1": 7}
    assert duplicates.result() == (0, 0, 0)
    assert not any(str(value) in str(scan) for value in values)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([bytes(16), b"\x01" * 16, os.urandom(16),
                                           os.urandom(16)]),
                          st.sampled_from([b"a" * 16, os.urandom(16)])), max_size=80),
       st.integers(1, 5), st.sampled_from([1, 7, 2_000_000]))
def test_counters_of_key_ranges_merged_say_what_one_counter_says(
        cells: list[tuple[bytes, bytes]], parts: int, memory_cells: int) -> None:
    import tempfile
    from pathlib import Path

    # Given the cells split into consecutive ranges, each counted by its own counter
    whole = DuplicateCounter()
    for iv, ciphertext in cells:
        whole.add_fingerprints(fingerprint(iv, ciphertext))
    with tempfile.TemporaryDirectory() as directory:
        spills = []
        for index in range(parts):
            counter = DuplicateCounter(memory_cells=memory_cells,
                                       spill_path=Path(directory) / f"part-{index}")
            for iv, ciphertext in cells[index::parts]:
                counter.add_fingerprints(fingerprint(iv, ciphertext))
            spills.append(counter.export())
        # When their spills are merged, whole or bucket range by bucket range
        merged = column_scans.shared_across_spills(spills)
        halves = [column_scans.shared_across_spills(spills, range(0, 100)),
                  column_scans.shared_across_spills(spills, range(100, 251))]
    # Then the counts are exactly one counter's
    assert merged == whole.result()
    assert tuple(a + b for a, b in zip(*halves, strict=True)) == merged


def test_fernet_tallies_absorbed_in_key_order_say_what_one_tally_says() -> None:
    rows = [(i, encrypt_fernet_token(b"x", KEY, now=1_900_000_000) if i % 5 else f"bad-{i}",
             ["a", "b", "c"][i % 3]) for i in range(1, 200)]

    def tally() -> column_scans.FernetTally:
        return column_scans.FernetTally([KEY, OTHER], now=1_900_000_000, max_clock_skew_s=60,
                                        duplicates=DuplicateCounter(), parts=("a", "b", "other"),
                                        part_of=lambda v: v if v in ("a", "b") else "other")

    one = tally()
    one.add(rows, 1, 2)
    merged = tally()
    for start in range(0, 200, 37):
        part = tally()
        part.add(rows[start:start + 37], 1, 2)
        merged.absorb(part.counts())
    assert merged.scan("c") == one.scan("c")
    assert len(one.scan("c").examples) == column_scans.EXAMPLES


def _copy_escaped(value: str | None) -> bytes:
    """A value as PostgreSQL's COPY text format writes it (UTF-8)."""
    if value is None:
        return b"\\N"
    escapes = {"\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
               "\t": "\\t", "\v": "\\v"}
    return "".join(escapes.get(c, c) for c in value).encode()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([f"$2b$12${'a' * 53}", f"$2y$10${'b' * 53}", None, "", "x\ty",
                                 "back\\slash", "é" * 60, f"$2b$12${'a' * 53}\n",
                                 f"$2b$12${'a' * 52}!"]), max_size=60),
       st.sampled_from([12, None]))
def test_hash_blocks_from_copy_say_what_rows_say(values: list[str | None],
                                                 cost: int | None) -> None:
    block = b"".join(f"{i}\t".encode() + _copy_escaped(v) + b"\n"
                     for i, v in enumerate(values, 1))
    tally = column_scans.HashTally(cost)
    if block:
        tally.add_copy_block(block)
    assert tally.scan("c") == scan_hash_cells(list(enumerate(values, 1)), "c", cost)
