"""The plaintext sweep: every encoding, chunk boundaries, files, and never the secret in a hit."""

from __future__ import annotations

import base64
import time
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from harness.redaction import KnownSecrets
from harness.sweep import SecretSweep

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
@given(st.binary(max_size=300), st.binary(max_size=300), st.integers(1, 64))
def test_chunk_boundaries_find_each_occurrence_once(before: bytes, after: bytes, size: int) -> None:
    # Given a secret somewhere in a stream, when the stream arrives in chunks of
    # any size, then it is found exactly once at its true offset.
    data = before + SECRET.encode() + after
    whole = {(h.label, h.offset) for h in _sweep().scan_bytes(data, "s")}
    chunks = [data[i:i + size] for i in range(0, len(data), size)]
    streamed = [(h.label, h.offset) for h in _sweep().scan_stream(chunks, "s")]
    assert len(streamed) == len(set(streamed))
    assert set(streamed) == whole
    assert ("canary password (raw)", len(before)) in whole


def test_sweep_files_reports_path_and_offset(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "api.log").write_bytes(b"a" * 5000 + b"password=" + SECRET.encode())
    (tmp_path / "clean.log").write_bytes(b"nothing here\n" * 100)
    (tmp_path / "link").symlink_to(tmp_path / "logs" / "api.log")
    report = _sweep().sweep_files([tmp_path], chunk_bytes=1000)
    assert report.locations == 2
    assert [(h.location.endswith("api.log"), h.offset) for h in report.hits] == [(True, 5009)]
    assert report.unreadable == []


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
