"""The secret-shape sweep: log lines, split streams, byte bounds, row ids, token lines and
ciphertext-like files, and never the value in a hit."""

from __future__ import annotations

from pathlib import Path

from harness.formats.fernet import FernetKey, encrypt_fernet_token
from harness.formats.secret_patterns import ShapeFinder
from harness.redaction import KnownSecrets
from harness.shape_sweep import HIGH_ENTROPY_RULE, ShapeScan

JWT = ("eyJhbGciOiAiSFMyNTYiLCAidHlwIjogIkpXVCJ9.eyJzdWIiOiAiNDIiLCAiZXhwIjogMTkwMDAwMDAwMH0."
       "AbeuEchsVEoR7TJYHSDATOCN1D61-k7U4O5Zi-czrwc")
BEARER_LINE = b'{"level": "info", "headers": {"Authorization": "Bearer ' + b"Z" * 10 + b'abcdefghijKLMNOP"}}'


def _scan(known: KnownSecrets | None = None) -> ShapeScan:
    return ShapeScan(ShapeFinder(key=b"k" * 32), known)


def test_shapes_in_a_log_name_the_line_and_never_the_value(tmp_path: Path) -> None:
    # Given a log whose third line carries an Authorization header
    log = tmp_path / "api.log"
    log.write_bytes(b"first\nsecond\n" + BEARER_LINE + b"\nlast\n")
    known = KnownSecrets()
    scan = _scan(known)
    # When it is searched in chunks smaller than a line
    scan.scan_file(log, chunk_bytes=7)
    # Then the hit names the file and line 3, and the value is now a known secret
    (hit,) = scan.report.hits
    assert (hit.rule, hit.line, hit.place) == ("authorization-header", 3, f"{log} line 3")
    assert hit.offset == len(b"first\nsecond\n") + BEARER_LINE.index(b"Authorization")
    assert "abcdefghij" not in hit.describe() and hit.fingerprint in hit.describe()
    assert known.items() and known.items()[0][1] == "found authorization-header"


def test_shapes_split_across_chunks_are_found_once() -> None:
    scan = _scan()
    stream = scan.stream("redis:session", lines=False)
    data = b"prefix " + JWT.encode() + b" suffix"
    for i in range(0, len(data), 5):
        stream.feed(data[i:i + 5])
    stream.finish()
    assert [(h.rule, h.offset, h.line) for h in scan.report.hits] == [("jwt", 7, None)]


def test_a_bounded_stream_says_where_it_stopped() -> None:
    scan = _scan()
    stream = scan.stream("/backups/plain.dump", lines=False, limit_bytes=100)
    stream.feed(b"x\n" * 60)
    stream.feed(JWT.encode())
    stream.finish()
    assert scan.report.hits == [] and scan.report.cut == ["/backups/plain.dump (first 100 bytes)"]
    assert scan.report.bytes_scanned == 100


def test_rows_name_the_row_and_ciphertext_columns_flag_high_entropy_non_fernet() -> None:
    # Given a batch of rows: a JWT in a text column, a raw random token in a Fernet column
    token = encrypt_fernet_token(b"x", FernetKey(b"k" * 32, "t"))
    rows = [(1, b"@brand", token.encode()), (2, ("note " + JWT).encode(), token.encode()),
            (3, None, b"Zq8dK3vN0pXr7TbW2yLm5sHc9fJg4aEu"), (4, b"line\nbreak", None)]
    scan = _scan()
    scan.scan_rows(rows, ["postgres:channels.external_account", "postgres:channels.access_token_enc"],
                   [False, True])
    places = sorted((h.rule, h.place) for h in scan.report.hits)
    assert places == [(HIGH_ENTROPY_RULE, "postgres:channels.access_token_enc row 3"),
                      ("jwt", "postgres:channels.external_account row 2")]
    assert scan.report.rows == 4


def test_shapes_tee_reads_each_stream_once() -> None:
    scan = _scan()
    places = [("redis:a", iter([b"plain", b" value"])), ("redis:b", iter([JWT.encode()]))]
    seen = [(where, b"".join(chunks)) for where, chunks in scan.tee(places)]
    assert seen == [("redis:a", b"plain value"), ("redis:b", JWT.encode())]
    assert [h.place for h in scan.report.hits] == ["redis:b offset 0"]


def test_a_key_name_holding_the_value_is_named_without_it() -> None:
    scan = _scan()
    location = f"redis:session:{JWT}"
    for _, chunks in scan.tee([(location, iter([f"session:{JWT}\n".encode(), b"value"]))]):
        b"".join(chunks)
    (hit,) = scan.report.hits
    assert JWT not in hit.describe() and hit.location == f"redis:session:[jwt {hit.fingerprint}]"


def test_ciphertext_like_backups_are_listed_not_searched(tmp_path: Path) -> None:
    import os

    from harness.shape_sweep import OPAQUE_WINDOW_BYTES, looks_opaque

    # Given an encrypted-looking file, one with a plaintext middle, a small one and a text dump
    (tmp_path / "enc").write_bytes(os.urandom(3 * OPAQUE_WINDOW_BYTES))
    (tmp_path / "mixed").write_bytes(os.urandom(OPAQUE_WINDOW_BYTES) + (JWT.encode() + b"\n") * 1000
                                     + os.urandom(OPAQUE_WINDOW_BYTES))
    (tmp_path / "small").write_bytes(os.urandom(1000))
    (tmp_path / "dump.sql").write_bytes(b"COPY t FROM stdin;\n" * 10_000)
    assert [looks_opaque(tmp_path / n) for n in ("enc", "mixed", "small", "dump.sql")] == \
        [True, False, False, False]
    # When the backup store is searched skipping opaque files
    scan = _scan()
    scan.scan_files([tmp_path], [], lines=False, skip_opaque=True)
    # Then only the ciphertext-like one is listed, and the mixed one's JWTs are found
    assert scan.report.opaque == [str(tmp_path / "enc")]
    assert scan.report.hits_total == 1000 and {h.location for h in scan.report.hits} == \
        {str(tmp_path / "mixed")}


def test_token_lines_are_skipped_and_a_secret_between_them_is_found(tmp_path: Path,
                                                                     monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import harness.shape_sweep as sweep_module

    # Given a backup-like file: long Fernet-token lines (cut into pieces), a JWT line among them
    monkeypatch.setattr(sweep_module, "SHAPE_LINE_BYTES", 200)
    token = encrypt_fernet_token(b"z" * 300, FernetKey(b"k" * 32, "t"))
    path = tmp_path / "backup.enc"
    path.write_bytes(f"{token}\n{token}\nnote {JWT}\n{token}\n".encode())
    scan = _scan()
    # When it is searched by lines in chunks smaller than a line
    scan.scan_file(path, chunk_bytes=50)
    # Then the JWT is found on line 3, at its byte offset, and nothing else
    (hit,) = scan.report.hits
    assert (hit.rule, hit.line, hit.offset) == ("jwt", 3, 2 * (len(token) + 1) + len("note "))


def test_redis_fields_named_for_secrets_fail_unless_ciphertext() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from harness.shape_sweep import SENSITIVE_FIELD_RULE, json_sensitive_fields

    fernet = encrypt_fernet_token(b"x", FernetKey(b"k" * 32, "t"))
    bcrypt_hash = "$2b$12$" + "a" * 53
    known = KnownSecrets()
    scan = _scan(known)
    places = [
        # A hash: its name, then one chunk per field, as redis_contents lays it out.
        ("redis:h", iter([b"h\n", b"password\nhunter2-plain\n", b"email\n" + fernet.encode()
                          + b"\n", b"secret\n" + bcrypt_hash.encode() + b"\n", b"name\nBob\n"])),
        # A string holding JSON, and a hash field holding JSON.
        ("redis:j", iter([b"j\n", b'{"user": {"Email": "a@example.com", "token": ""}, "n": 1}'])),
        ("redis:k", iter([b"k\n", b'data\n[{"new_password": "s3cret-value"}]\n'])),
        # Set members and a list are no pairs.
        ("redis:s", iter([b"s\n", b"password\n", b"token\n"])),
    ]
    for _, chunks in scan.tee(places, fields=True):
        b"".join(chunks)
    found = [(h.rule, h.location) for h in scan.report.hits]
    assert found == [(SENSITIVE_FIELD_RULE, "redis:h field password"),
                     (SENSITIVE_FIELD_RULE, "redis:j field user.Email"),
                     (SENSITIVE_FIELD_RULE, "redis:k field 0.new_password")]
    assert "hunter2-plain" not in str(scan.report) and "a@example.com" not in str(scan.report)
    # What was found is a secret of the run from now on.
    assert known.redact("hunter2-plain") != "hunter2-plain"
    # Without fields=True (every other area) the names are not judged.
    plain = _scan()
    for _, chunks in plain.tee([("redis:h", iter([b"h\n", b"password\nhunter2-plain\n"]))]):
        b"".join(chunks)
    assert plain.report.hits == []

    @settings(max_examples=200, deadline=None)
    @given(st.binary(max_size=300))
    def never_crashes(data: bytes) -> None:
        list(json_sensitive_fields(data))
        _scan().judge_fields("redis:x", data)

    never_crashes()
    assert list(json_sensitive_fields(b"[" * 100_000 + b"]" * 100_000)) == []


def test_a_file_swapped_for_a_fifo_after_listing_is_unreadable_not_a_hang(tmp_path: Path, monkeypatch) -> None:
    import os
    import threading
    import time

    import harness.shape_sweep

    # Given a log listed as a regular file and replaced by a FIFO (no writer) before it is read
    (tmp_path / "api.log").write_bytes(JWT.encode() + b"\n")
    listed = harness.shape_sweep.files_under

    def listing_then_swap(roots, report):
        for path in listed(roots, report):
            path.unlink()
            os.mkfifo(path)
            yield path

    monkeypatch.setattr(harness.shape_sweep, "files_under", listing_then_swap)
    # When the files are searched for shapes (with and without the opacity test)
    for skip_opaque in (True, False):
        scan, unreadable = _scan(), []
        started = time.monotonic()
        worker = threading.Thread(target=scan.scan_files, args=([tmp_path], unreadable),
                                  kwargs={"skip_opaque": skip_opaque}, daemon=True)
        worker.start()
        worker.join(5.0)
        # Then each ends at once, the FIFO named as unreadable, nothing searched
        assert not worker.is_alive() and time.monotonic() - started < 1.0
        assert unreadable == [f"{tmp_path / 'api.log'}: a FIFO when opened, not a regular file"]
        assert scan.report.hits == []
        (tmp_path / "api.log").unlink()
        (tmp_path / "api.log").write_bytes(JWT.encode() + b"\n")
