"""The column scanners at_rest streams rows into: same counts as a naive reading, flat memory.

(The judgements themselves are tested in tests/checks/test_at_rest.py; these
tests pin the fast paths to what a straightforward implementation says.)
"""

from __future__ import annotations

import os
import random
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from checks.at_rest import DuplicateCounter, scan_fernet_cells
from harness.formats.fernet import FernetKey, encrypt_fernet_token

KEY = FernetKey(b"k" * 32, "v1")
OTHER = FernetKey(b"o" * 32, "v2")


def _naive_shared(values: list[bytes]) -> tuple[int, int]:
    counts = Counter(values)
    return sum(n for n in counts.values() if n > 1), sum(1 for n in counts.values() if n > 1)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([bytes(16), b"\x01" * 16, b"\x00" * 8 + b"\x02" * 8,
                                           os.urandom(16), os.urandom(16)]),
                          st.sampled_from([b"a" * 16, b"b" * 32, os.urandom(16)])),
                max_size=60))
def test_duplicate_counter_agrees_with_a_naive_count(cells: list[tuple[bytes, bytes]]) -> None:
    # Given cells with repeated IVs and ciphertexts, When they are counted,
    # Then the counts are those of a plain Counter over the IV prefixes and ciphertexts.
    duplicates = DuplicateCounter()
    for iv, ciphertext in cells:
        duplicates.add(iv, ciphertext)
    iv_cells, iv_groups = _naive_shared([iv[:8] for iv, _ in cells])
    ct_cells, _ = _naive_shared([ct for _, ct in cells])
    assert duplicates.result() == (iv_cells, iv_groups, ct_cells)


def test_duplicate_counter_with_many_unique_cells_and_one_fixed_iv() -> None:
    rng = random.Random(7)
    duplicates = DuplicateCounter()
    for _ in range(50_000):
        duplicates.add(rng.randbytes(16), rng.randbytes(48))
    for i in range(3):
        duplicates.add(bytes(16), f"{i:048d}".encode())
    assert duplicates.result() == (3, 1, 0)
    # Asking twice gives the same answer.
    assert duplicates.result() == (3, 1, 0)


def test_fernet_scan_names_keys_in_first_seen_order_and_counts_every_reason() -> None:
    cells = [encrypt_fernet_token(b"a", OTHER, now=1_000_000),
             encrypt_fernet_token(b"b", KEY, now=1_000_000),
             encrypt_fernet_token(b"c", KEY, now=1_000_000).encode("ascii"),
             None, "", b"\xff\xfe", "plain-token", 42, "A" * 2_000_000,
             encrypt_fernet_token(b"d", KEY, now=9_000_000)]
    scan = scan_fernet_cells(enumerate(cells, 1), "t.c", [KEY, OTHER], now=1_000_000,
                             max_clock_skew_s=300, duplicates=DuplicateCounter())
    assert (scan.rows, scan.valid) == (10, 3)
    assert list(scan.keys_used.items()) == [("v2", 1), ("v1", 2)]
    assert scan.failures == {"missing": 2, "not_base64": 2, "not_text": 1, "bad_version": 1,
                             "future_timestamp": 1}
    assert scan.examples[:2] == ("row 4: missing", "row 5: missing")
