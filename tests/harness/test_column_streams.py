"""The at-rest column checks fed from a real PostgreSQL 15: same counts as the old per-query path.

A scratch cluster holds a ``channels`` table with garbage in every form (NULL,
empty, non-base64, truncated, wrong version byte, future timestamp, a
megabyte cell, non-ASCII text, rows of no known platform) and a ``users``
table with as many kinds of password hash. ``observe_tokens`` (one pass over
both columns) and ``observe_passwords`` (batches) must say exactly what the
straightforward reading says: one ``stream_column`` query per column and
platform, and one classification per value.
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scratch_postgres import INSTALLED, ScratchPostgres, scratch_postgres

from checks.at_rest.tokens_fernet import tokens_fernet_verdict
from harness import parallel_scan
from harness.canaries import PLATFORMS
from harness.column_scans import (
    EXAMPLES,
    DuplicateCounter,
    FernetColumnScan,
    HashTally,
    scan_fernet_cells,
)
from harness.formats.bcrypt_hash import classify_stored_hash
from harness.formats.fernet import FernetKey, encrypt_fernet_token
from harness.outcomes import ProbeError
from harness.policy import load_policy
from harness.probes import pg_reads, stored_tokens
from harness.probes.database import DatabaseProbe
from harness.probes.passwords import classify_column, observe_passwords
from harness.probes.stored_tokens import TOKEN_COLUMNS, channel_token_batches, observe_tokens
from harness.profile import TargetProfile
from harness.redaction import KnownSecrets

KEY = FernetKey(b"k" * 32, "votriz/token-encryption/v1")
OLD = FernetKey(b"o" * 32, "votriz/token-encryption/v0")
NOW = 1_900_000_000
SALTED = "CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW"

pytestmark = pytest.mark.skipif(not INSTALLED, reason="PostgreSQL 15 not installed")


def _tokens() -> list[str | None]:
    good = encrypt_fernet_token(b"oauth", KEY, now=NOW - 100)
    raw = base64.urlsafe_b64decode(good)
    return [
        good, encrypt_fernet_token(b"old key", OLD, now=NOW - 100_000), None, "",
        "plain-oauth-token", good[:-8], good[:50],
        base64.urlsafe_b64encode(b"\x81" + raw[1:]).decode(),
        encrypt_fernet_token(b"future", KEY, now=NOW + 10_000),
        encrypt_fernet_token(b"t", FernetKey(b"x" * 32), now=NOW),
        "gAAAAA" + "A" * 1_000_000, "gAAAAAé" + good[7:], good + "\n", good.rstrip("="),
    ]


@pytest.fixture(scope="module")
def scratch() -> Iterator[ScratchPostgres]:
    with scratch_postgres("colstream-pg-") as pg:
        pg.psql("""
            CREATE ROLE auditor LOGIN;
            CREATE TABLE channels (id bigserial PRIMARY KEY, platform text,
                                   access_token_enc text, refresh_token_enc text);
            CREATE TABLE users (id bigserial PRIMARY KEY, password_hash text);
            GRANT SELECT ON channels, users TO auditor;
        """)
        tokens = _tokens()
        platforms = [*PLATFORMS, None, "myspace", "other", ""]
        rows = []
        for i in range(1200):
            # Mostly good tokens (some with the old key), garbage spread over platforms.
            access = tokens[(i // 7) % len(tokens)] if i % 7 == 0 else tokens[i % 2]
            refresh = tokens[(i // 11) % len(tokens)] if i % 11 == 0 else tokens[0]
            if i % 3 == 0:
                access = encrypt_fernet_token(f"fresh {i}".encode(), KEY, now=NOW - 5)
            rows.append((i + 1, platforms[i % len(platforms)], access, refresh))
        pg.copy("channels", rows)
        hashes = [f"$2b$12${SALTED}", f"$2y$10${SALTED}", None, "", "hunter2",
                  "5f4dcc3b5aa765d61d8327deb882cf99", "$2b$12$short", f"$2b$12${SALTED}\n",
                  "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA", "é" * 60]
        users = [(i + 1, hashes[i % len(hashes)] if i % 13 == 0 else hashes[0])
                 for i in range(30_000)]
        pg.copy("users", users)
        yield pg


def _merge_fernet_scans(column: str,
                       parts: Sequence[tuple[str, FernetColumnScan]]) -> FernetColumnScan:
    """One column's scan from scans of its rows per platform (the old reading's merge)."""
    failures: Counter[str] = Counter()
    keys_used: Counter[str] = Counter()
    examples: list[str] = []
    for platform, part in parts:
        failures.update(part.failures)
        keys_used.update(part.keys_used)
        examples += [f"{e} ({platform})" for e in part.examples]
    return FernetColumnScan(
        column, sum(p.rows for _, p in parts), sum(p.valid for _, p in parts), dict(failures),
        tuple(examples[:EXAMPLES]), dict(keys_used),
        {platform: {"rows": p.rows, "valid": p.valid} for platform, p in parts if p.rows})


def _old_token_scans(profile: TargetProfile) -> tuple[list[FernetColumnScan],
                                                      tuple[int, int, int]]:
    """The check's reading before the single pass: one query per column and platform."""
    duplicates = DuplicateCounter()
    scans = []
    with DatabaseProbe(profile, load_policy()) as db:
        for table, column in TOKEN_COLUMNS:
            name = f"{table}.{column}"

            def scan(where: str, params: tuple[Any, ...], table: str = table,
                     column: str = column, name: str = name) -> FernetColumnScan:
                batches = db.stream_column(table, column, where=where, params=params)
                return scan_fernet_cells((row for batch in batches for row in batch), name,
                                         [KEY, OLD], now=NOW, max_clock_skew_s=300,
                                         duplicates=duplicates)

            parts = [(p, scan("platform = %s", (p,))) for p in PLATFORMS]
            parts.append(("other", scan("platform IS NULL OR platform <> ALL(%s)",
                                        (list(PLATFORMS),))))
            scans.append(_merge_fernet_scans(name, parts))
    return scans, duplicates.result()


def test_one_pass_over_channels_says_what_one_query_per_platform_said(
        scratch: ScratchPostgres, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given channels full of garbage over known, unknown and no platforms
    monkeypatch.setattr(stored_tokens, "token_key_ring", lambda profile, policy, known: (KEY, OLD))
    monkeypatch.setattr(stored_tokens.time, "time", lambda: NOW)
    monkeypatch.setattr(stored_tokens, "TOKEN_BATCH_ROWS", 97)
    # When the check reads both columns in one pass
    obs = observe_tokens(scratch.profile("scratch"), load_policy(), KnownSecrets(), None, "test")
    # Then every count, example, key and platform split is the old reading's
    old_scans, old_duplicates = _old_token_scans(scratch.profile("scratch"))
    assert list(obs.columns) == old_scans
    assert (obs.shared_iv_cells, obs.shared_iv_groups, obs.shared_ciphertext_cells) == \
        old_duplicates
    access = obs.columns[0]
    assert access.rows == 1200 and 0 < access.valid < 1200
    assert {"missing", "not_base64", "bad_length", "bad_version", "future_timestamp",
            "bad_hmac"} <= set(access.failures)
    assert set(access.by_platform) == {*PLATFORMS, "other"}
    assert access.keys_used.keys() == {KEY.label, OLD.label}
    verdict = tokens_fernet_verdict(obs)
    assert verdict.outcome.value == "FAIL"


def test_channels_without_a_platform_column_are_one_part(scratch: ScratchPostgres,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stored_tokens, "token_key_ring", lambda profile, policy, known: (KEY, OLD))
    monkeypatch.setattr(stored_tokens.time, "time", lambda: NOW)
    with DatabaseProbe(scratch.profile("scratch"), load_policy()) as db:
        batches = list(channel_token_batches(db, by_platform=False, batch_rows=500))
    assert [len(b) for b in batches] == [500, 500, 200]
    assert {row[1] for batch in batches for row in batch} == {None}


def test_tokens_read_as_stored_bytes_leave_the_session_decoding_text(scratch: ScratchPostgres) -> None:
    # Given the token read, which takes text as undecoded bytes for its own transaction
    with DatabaseProbe(scratch.profile("scratch"), load_policy()) as db:
        batches = channel_token_batches(db, by_platform=True, batch_rows=100)
        first = next(batches)
        assert {type(row[1]) for row in first} <= {bytes, type(None)}
        assert any(isinstance(row[2], bytes) for row in first)
        # When the reader stops early, Then the next read decodes text again
        batches.close()
        values = [v for batch in db.stream_column("channels", "platform") for _, v in batch]
        assert {type(v) for v in values} <= {str, type(None)} and str in {type(v) for v in values}
        # And a full read as bytes sees the same values, encoded
        again = [row[1] for batch in channel_token_batches(db, by_platform=True)
                 for row in batch]
        assert again == [v.encode() if v is not None else None for v in values]


def test_unreadable_channels_is_a_probe_error_naming_both_columns(scratch: ScratchPostgres) -> None:
    scratch.psql("REVOKE SELECT ON channels FROM auditor")
    try:
        with DatabaseProbe(scratch.profile("scratch"), load_policy()) as db, \
                pytest.raises(ProbeError) as caught:
            list(channel_token_batches(db, by_platform=True))
        assert str(caught.value).startswith("cannot read channels.platform, "
                                            "channels.access_token_enc, channels.refresh_token_enc: ")
        assert "permission denied" in str(caught.value)
    finally:
        scratch.psql("GRANT SELECT ON channels TO auditor")


def test_password_hashes_in_batches_say_what_one_by_one_said(scratch: ScratchPostgres) -> None:
    obs = observe_passwords(scratch.profile("scratch"), load_policy(), KnownSecrets(), None, "t")
    with DatabaseProbe(scratch.profile("scratch"), load_policy()) as db:
        rows = [row for batch in db.stream_column("users", "password_hash") for row in batch]
    schemes: dict[str, int] = {}
    examples = []
    for row_id, value in rows:
        kind = classify_stored_hash(value)
        schemes[kind.scheme.value] = schemes.get(kind.scheme.value, 0) + 1
        if kind.cost is None and len(examples) < EXAMPLES:
            examples.append(f"row {row_id}: {kind.scheme.value}")
    assert obs.scan.rows == 30_000
    assert obs.scan.schemes == schemes and list(obs.scan.schemes) == list(schemes)
    assert list(obs.scan.examples) == examples
    assert obs.scan.costs == {12: schemes["bcrypt"] - 231, 10: 231}
    assert len(obs.scan.cost_examples) == EXAMPLES


@pytest.mark.parametrize("jobs", [2, 3])
def test_key_ranges_in_worker_processes_say_what_one_process_says(
        scratch: ScratchPostgres, monkeypatch: pytest.MonkeyPatch, jobs: int) -> None:
    # Given channels whose good tokens repeat across the whole table (so shared IVs span
    # every key range) and users with every kind of hash
    monkeypatch.setattr(stored_tokens, "token_key_ring", lambda profile, policy, known: (KEY, OLD))
    monkeypatch.setattr(stored_tokens.time, "time", lambda: NOW)
    profile, policy = scratch.profile("scratch"), load_policy()
    one = observe_tokens(profile, policy.with_scan(jobs=1), KnownSecrets(), None, "t")
    one_hashes = observe_passwords(profile, policy.with_scan(jobs=1), KnownSecrets(), None, "t")
    # When the same tables are split into key ranges read by worker processes
    monkeypatch.setattr(parallel_scan, "PARALLEL_MIN_ROWS", 1)
    with DatabaseProbe(profile, policy) as db:
        assert len(parallel_scan.plan_scan(db, "channels", policy.with_scan(jobs=jobs)).parts) \
            == jobs
    many = observe_tokens(profile, policy.with_scan(jobs=jobs), KnownSecrets(), None, "t")
    many_hashes = observe_passwords(profile, policy.with_scan(jobs=jobs), KnownSecrets(), None,
                                    "t")
    # Then every count, example, key, platform split and duplicate count is the same
    assert many == one and many_hashes == one_hashes
    assert one.shared_iv_cells > 1000 and one.sample is None
    assert one_hashes.scan.rows == 30_000


def test_a_sampled_scan_judges_a_uniform_sample_and_says_so(
        scratch: ScratchPostgres, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stored_tokens, "token_key_ring", lambda profile, policy, known: (KEY, OLD))
    monkeypatch.setattr(stored_tokens.time, "time", lambda: NOW)
    scratch.psql("ANALYZE channels; ANALYZE users")
    policy = load_policy().with_scan(sample_rows=300)
    # When a quarter of channels and 1% of users are sampled
    obs = observe_tokens(scratch.profile("scratch"), policy, KnownSecrets(), None, "t")
    hashes = observe_passwords(scratch.profile("scratch"), policy, KnownSecrets(), None, "t")
    # Then about that many rows are judged, the garbage among them still FAILs, SAMPLED
    assert obs.sample is not None and hashes.sample is not None
    assert 150 < obs.sample.rows_sampled == obs.columns[0].rows < 450
    assert obs.sample.rows_in_table == 1200 and obs.sample.percent == 25.0
    assert 150 < hashes.scan.rows < 450 and hashes.sample.rows_sampled == hashes.scan.rows
    verdict = tokens_fernet_verdict(obs)
    assert verdict.outcome.value == "FAIL" and verdict.message.startswith("SAMPLED")
    assert verdict.details["sampling"]["rows_sampled"] == obs.sample.rows_sampled
    # And a sample as large as the table is a full read, not marked
    whole = observe_tokens(scratch.profile("scratch"), load_policy().with_scan(sample_rows=1200),
                           KnownSecrets(), None, "t")
    assert whole.sample is None and whole.columns[0].rows == 1200


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_worker_that_cannot_read_its_range_is_one_probe_error(
        scratch: ScratchPostgres, monkeypatch: pytest.MonkeyPatch, jobs: int) -> None:
    monkeypatch.setattr(stored_tokens, "token_key_ring", lambda profile, policy, known: (KEY, OLD))
    monkeypatch.setattr(parallel_scan, "PARALLEL_MIN_ROWS", 1)
    scratch.psql("REVOKE SELECT (access_token_enc) ON channels FROM auditor;"
                 " REVOKE SELECT ON channels FROM auditor;"
                 " GRANT SELECT (id, platform, refresh_token_enc) ON channels TO auditor")
    try:
        with pytest.raises(ProbeError) as caught:
            observe_tokens(scratch.profile("scratch"), load_policy().with_scan(jobs=jobs),
                           KnownSecrets(), None, "t")
        assert str(caught.value).startswith("cannot read channels.platform, "
                                            "channels.access_token_enc, channels.refresh_token_enc: ")
        assert "permission denied" in str(caught.value)
    finally:
        scratch.psql("GRANT SELECT ON channels TO auditor")


def test_chunks_joined_on_the_server_say_what_row_by_row_says(
        scratch: ScratchPostgres, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given chunks of one page (about 200 of them), every one with garbage (read again, row by
    # row), taken by 2 readers in whatever order they finish
    monkeypatch.setattr(pg_reads, "CHUNK_PAGES", 1)
    again: list[int] = []
    read_again = DatabaseProbe.joined_pages

    def counting(self: DatabaseProbe, *args: Any, take: Any, **kwargs: Any) -> Any:
        def counted(chunk: pg_reads.JoinedChunk) -> bool:
            return bool(take(chunk) or again.append(chunk.rows))

        return read_again(self, *args, take=counted, **kwargs)

    monkeypatch.setattr(DatabaseProbe, "joined_pages", counting)
    profile, policy = scratch.profile("scratch"), load_policy()
    # When the column is classified
    obs = observe_passwords(profile, policy.with_scan(jobs=2), KnownSecrets(), None, "t")
    # Then every count and example is what classifying each value in key order says
    tally = HashTally(policy.bcrypt.cost)
    with DatabaseProbe(profile, policy) as db:
        rows = [row for batch in db.stream_column("users", "password_hash", where="true ORDER BY id")
                for row in batch]
    tally.add(rows)
    assert obs.scan == tally.scan("users.password_hash")
    assert len(again) > 100 and sum(again) == obs.scan.rows == 30_000
    assert obs.scan.read.startswith("joined pages, 2 readers, ")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(st.one_of(
    st.none(), st.text(max_size=70).map(lambda t: t.replace("\x00", "")),
    st.sampled_from([f"$2b$12${SALTED}", f"$2a$04${SALTED}", f"$2y$31${SALTED}", f"$2b$١٢${SALTED}",
                     f"$2b$12${SALTED}\n$2b$12${SALTED}", f"$2b$12${SALTED[:-1]}é", ""])),
    max_size=12))
def test_any_values_joined_by_the_server_are_classified_as_one_by_one(
        scratch: ScratchPostgres, values: list[str | None]) -> None:
    # Given any text values in a table
    scratch.psql("DROP TABLE IF EXISTS any_hashes; CREATE TABLE any_hashes"
                 " (id bigint PRIMARY KEY, password_hash text); GRANT SELECT ON any_hashes TO auditor")
    with psycopg.connect(scratch.dsn(), autocommit=True) as conn:
        conn.cursor().executemany("INSERT INTO any_hashes VALUES (%s, %s)",
                                  [(i * 7, v) for i, v in enumerate(values)])
    # When they are classified as the check does, Then it says what classifying each does
    profile, policy = scratch.profile("scratch"), load_policy()
    with DatabaseProbe(profile, policy) as db:
        tally, _ = classify_column(db, profile, policy, KnownSecrets(),
                                   column=("any_hashes", "password_hash"))
    expected = HashTally(policy.bcrypt.cost)
    expected.add([(i * 7, v) for i, v in enumerate(values)])
    assert tally.scan("c") == expected.scan("c") and tally.read.startswith("joined pages")
