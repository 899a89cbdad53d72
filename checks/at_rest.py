"""At rest: what the service stores, and how.

The page promises Fernet per row for the OAuth tokens of five platforms,
bcrypt 12 for passwords, bcrypt-hashed one-time MFA backup codes and recovery
tokens, PostgreSQL 15 on encrypted volumes, encrypted backups with a 30-day
retention and a monthly restore drill, "no sensitive data is stored in
plaintext", and a short list of what is NOT encrypted.

A canary account (``harness/canaries.py``) plants known secrets through the
API; the probes read what the auditor role can see in PostgreSQL
(``harness/probes/database.py``), Redis, the logs and the backups, and the
judgements below are pure functions over those observations. Whole columns
are streamed through server-side cursors and judged cell by cell: a garbage
cell is a counted FAIL reason, never a crash.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import hmac
import itertools
import os
import re
import tempfile
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field

from harness.canaries import BACKUP_CODES_PROMISED, PLATFORMS, Canary, CanarySession, MailCapture
from harness.evidence import EvidenceRecorder
from harness.formats.bcrypt_hash import (
    HashMatch,
    HashScheme,
    bcrypt_check,
    bcrypt_cost_histogram,
    classify_stored_hash,
)
from harness.formats.fernet import (
    FINGERPRINT_BYTES,
    FernetKey,
    FernetKeyError,
    FernetRingVerifier,
    FernetTokenError,
    decrypt_fernet_token,
    fingerprint,
    parse_fernet_token,
)
from harness.outcomes import ProbeError, Verdict
from harness.policy import Policy
from harness.probes import backups as backup_probe
from harness.probes import docker_engine
from harness.probes import hsm as hsm_probe
from harness.probes.api import VotrizApi
from harness.probes.database import ColumnInfo, DatabaseProbe, DatabaseServer
from harness.probes.redis_store import redis_contents
from harness.profile import TargetProfile
from harness.redaction import KnownSecrets
from harness.sweep import SecretSweep, SweepHit, SweepReport
from harness.tomlfile import load_toml_model

TOKEN_COLUMNS = (("channels", "access_token_enc"), ("channels", "refresh_token_enc"))
TOKEN_KEY_FAMILY = "token-encryption/"
INVENTORY_PATH = Path(__file__).resolve().parent.parent / "fixtures" / "policy" / "inventory.toml"
#: How many failing rows a verdict names (by row id, never by value).
EXAMPLES = 10
#: Bits per byte below which a backup sample does not look like ciphertext
#: (uniformly random bytes give 8.0; compressed SQL about 7.9, but compressed
#: dumps carry a PGDMP header; plain SQL text about 4.5-5.5).
MIN_CIPHERTEXT_ENTROPY = 7.5
#: Samples shorter than this are too small for entropy to mean anything.
MIN_ENTROPY_SAMPLE = 1024
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

VOLUMES_ATTESTATION = (
    "The storage under PostgreSQL's data directory cannot be seen from a database connection. "
    "Supply an attestation (profile [attestations] REST-DB-ENCRYPTED-VOLUMES = FILE) showing "
    "the volume's encryption: e.g. `lsblk -o NAME,TYPE,FSTYPE,MOUNTPOINT` with a `crypt` device "
    "under the data directory (`SHOW data_directory`), or the cloud volume's encryption flag, "
    "and name the key that protects it.")


def _evidence(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return value


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _counts(counter: dict[str, int]) -> str:
    return ", ".join(f"{reason} {n}" for reason, n in sorted(counter.items(), key=lambda i: -i[1]))


# --- shared fixtures and helpers ---------------------------------------------------------------


@pytest.fixture(scope="session")
def at_rest_canary(profile: TargetProfile, policy: Policy,
                   known_secrets: KnownSecrets) -> Iterator[CanarySession]:
    """One canary account for the at-rest checks, removed at the end of the run."""
    def new_api() -> VotrizApi:
        return VotrizApi(profile, timeout_s=policy.timeouts.request_s)

    mail = MailCapture(profile, policy)
    session = CanarySession(new_api(), mail, known_secrets, api_factory=new_api)
    try:
        with session:
            yield session
    finally:
        mail.close()
        session.api.close()
    if not session.canary.removed:
        # Say so loudly: a canary left behind is data the harness put into the target.
        raise ProbeError(f"the canary account (users.id {session.canary.user_id}) could not be "
                         f"removed: {session.canary.cleanup_note}")


def _canary_unavailable(profile: TargetProfile) -> str | None:
    if profile.api is None:
        return "the profile has no [api] section, so no canary account can be made"
    if not profile.api.canaries:
        return "the profile does not allow canary accounts (api.canaries = false)"
    if profile.capture is None:
        return "the profile has no [capture] section to read the canary's recovery mail from"
    return None


def _canary_session(request: pytest.FixtureRequest, profile: TargetProfile) -> CanarySession | None:
    """The run's canary, or None when the profile does not allow one."""
    if _canary_unavailable(profile) is not None:
        return None
    session = request.getfixturevalue("at_rest_canary")
    assert isinstance(session, CanarySession)
    return session


def _database(profile: TargetProfile, policy: Policy, known: KnownSecrets) -> DatabaseProbe:
    # One connection per check: other checks restart PostgreSQL or rotate passwords.
    return DatabaseProbe(profile, policy, known_secrets=known)


def token_key_ring(profile: TargetProfile, policy: Policy,
                   known: KnownSecrets) -> tuple[FernetKey, ...]:
    """The token-encryption keys from the HSM (values registered as known secrets)."""
    if profile.hsm is None:
        raise ProbeError("the profile has no [hsm] section: the token-encryption keys cannot be read")
    prefix = profile.hsm.key_namespace + TOKEN_KEY_FAMILY
    snapshot = hsm_probe.snapshot(profile.hsm, known, read_prefix=prefix,
                                  timeout_s=policy.timeouts.request_s)
    return key_ring_from_values(prefix, snapshot.values)


def key_ring_from_values(prefix: str, values: hsm_probe.KeyValues) -> tuple[FernetKey, ...]:
    """The Fernet key ring from the values read under ``prefix``.

    Raises ProbeError (so the check is ERROR) when any key of the ring cannot be
    read: judging with part of the ring would report the cells encrypted under
    the missing key as "not Fernet", a FAIL the system did not earn.
    """
    if values.unreadable:
        unreadable = "; ".join(f"{label!r}: {reason}"
                               for label, reason in sorted(values.unreadable.items()))
        raise ProbeError(f"the token-encryption key ring under {prefix!r} cannot be read whole "
                         f"from the HSM ({unreadable}), so tokens under "
                         f"{'that key' if len(values.unreadable) == 1 else 'those keys'} could "
                         "not be verified")
    keys = []
    for label, value in values.items():
        try:
            keys.append(FernetKey(value, label))
        except FernetKeyError:
            raise ProbeError(f"HSM object {label!r} holds {len(value)} bytes, not a 32-byte "
                             "Fernet key") from None
    if not keys:
        raise ProbeError(f"no token-encryption key under {prefix!r} could be read from the HSM")
    return tuple(keys)


# --- at_rest.tokens_fernet --------------------------------------------------------------------


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

    def __init__(self, *, memory_cells: int = DUPLICATE_MEMORY_CELLS) -> None:
        self._memory_bytes = memory_cells * FINGERPRINT_BYTES
        self._held = bytearray()
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
        if self._spill is None:
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
        for index in range(DUPLICATE_BUCKETS):
            values = array("Q")
            for places in self._spilled:
                at, count = places[index][2:] if ciphertexts else places[index][:2]
                if count and self._spill is not None:
                    self._spill.seek(at)
                    values.fromfile(self._spill, count)
            yield values

    @staticmethod
    def _shared(buckets: Iterable[array[int]]) -> tuple[int, int]:
        """(values equal to another value, distinct values that repeat)."""
        cells = groups = 0
        for bucket in buckets:
            # Equal values always fall in the same bucket; most buckets hold none.
            if len(set(bucket)) == len(bucket):
                continue
            for count in Counter(bucket).values():
                if count > 1:
                    cells, groups = cells + count, groups + 1
        return cells, groups

    def result(self) -> tuple[int, int, int]:
        """(cells sharing an IV, distinct shared IVs, cells sharing a ciphertext)."""
        if self._result is None:
            if self._spilled:
                if self._held:
                    self._write_out()
                iv_cells, iv_groups = self._shared(self._buckets(ciphertexts=False))
                ct_cells, _ = self._shared(self._buckets(ciphertexts=True))
            else:
                ivs, ciphertexts = self._split_held()
                iv_cells, iv_groups = self._shared(ivs)
                ct_cells, _ = self._shared(ciphertexts)
            self._result = (iv_cells, iv_groups, ct_cells)
            if self._spill is not None:
                self._spill.close()
                self._spill = None
                self._spilled = []
        return self._result


@dataclass(frozen=True)
class FernetColumnScan:
    """One column's cells judged as Fernet tokens under the key ring.

    Attributes:
        column: ``table.column``.
        rows: cells looked at.
        valid: cells that parse and whose HMAC verifies under a key of the ring.
        failures: failure reason → number of cells.
        examples: up to :data:`EXAMPLES` failing rows as ``row <id>: <reason>``.
        keys_used: key label → number of cells it verifies.
        by_platform: platform → ``{"rows": n, "valid": n}`` when the table says
            which platform each row belongs to (empty otherwise).
    """

    column: str
    rows: int
    valid: int
    failures: dict[str, int]
    examples: tuple[str, ...]
    keys_used: dict[str, int]
    by_platform: dict[str, dict[str, int]] = field(default_factory=dict)


class FernetTally:
    """One column's Fernet judgement, fed in batches, split by platform where rows say it.

    Valid tokens go through :meth:`FernetRingVerifier.accept` in bulk; only the
    rows it hands back are judged one by one (for their reason). Each part
    (platform) keeps its own row counts and examples; the whole column its
    failure counts, key counts and the cells' fingerprints for the
    :class:`DuplicateCounter`.

    Attributes:
        keys: the key ring.
        parts: the parts rows are counted in, in the order evidence names them;
            ``("",)`` for a column that is not split.
    """

    def __init__(self, keys: Sequence[FernetKey], *, now: float, max_clock_skew_s: float,
                 duplicates: DuplicateCounter, parts: Sequence[str] = ("",),
                 part_of: Callable[[Any], str] | None = None) -> None:
        self.keys = tuple(keys)
        self.parts = tuple(parts)
        verifier = FernetRingVerifier(keys, now=now, max_clock_skew_s=max_clock_skew_s)
        self._accept, self._verify = verifier.accept, verifier.verify
        self._duplicates = duplicates
        self._part_of = part_of or (lambda value: self.parts[-1])
        self._rows = dict.fromkeys(self.parts, 0)
        self._bad = dict.fromkeys(self.parts, 0)
        self._examples: dict[str, list[str]] = {part: [] for part in self.parts}
        self._failures: Counter[str] = Counter()
        self._per_key = [0] * len(self.keys)

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
                    self._examples[part].append(f"row {row[0]}: {error.reason.value}")
                continue
            self._per_key[index] += 1
            fingerprints += fingerprint(iv, ciphertext)
        self._duplicates.add_fingerprints(fingerprints)

    def scan(self, column: str) -> FernetColumnScan:
        keys_used: Counter[str] = Counter()
        for key, count in zip(self.keys, self._per_key, strict=True):
            if count:
                keys_used[key.label] += count
        rows, bad = sum(self._rows.values()), sum(self._bad.values())
        if self.parts == ("",):
            return FernetColumnScan(column, rows, rows - bad, dict(self._failures),
                                    tuple(self._examples[""]), dict(keys_used))
        examples = [f"{e} ({part})" for part in self.parts for e in self._examples[part]]
        return FernetColumnScan(
            column, rows, rows - bad, dict(self._failures), tuple(examples[:EXAMPLES]),
            dict(keys_used),
            {part: {"rows": n, "valid": n - self._bad[part]}
             for part, n in self._rows.items() if n})


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
class CanaryTokenResult:
    """Whether one canary token reads back as what was handed in.

    Attributes:
        platform: the channel's platform.
        kind: ``access`` or ``refresh``.
        result: ``matches``, ``differs``, ``row missing``, or a Fernet failure reason.
    """

    platform: str
    kind: str
    result: str


def canary_token_results(canary: Canary, stored: dict[int, tuple[Any, Any]],
                         keys: Sequence[FernetKey], *, now: float,
                         max_clock_skew_s: float) -> tuple[CanaryTokenResult, ...]:
    """Decrypt the canary's stored tokens and compare them with what was handed in.

    ``stored`` maps channel id → (access cell, refresh cell).
    """
    results = []
    for channel in canary.channels:
        cells = stored.get(channel.channel_id)
        for index, (kind, handed) in enumerate((("access", channel.access_token),
                                                ("refresh", channel.refresh_token))):
            if cells is None:
                results.append(CanaryTokenResult(channel.platform, kind, "row missing"))
                continue
            try:
                plain = decrypt_fernet_token(cells[index], keys, now=now,
                                             max_clock_skew_s=max_clock_skew_s).plaintext
            except FernetTokenError as error:
                results.append(CanaryTokenResult(channel.platform, kind, error.reason.value))
                continue
            same = hmac.compare_digest(plain, handed.encode("utf-8"))
            results.append(CanaryTokenResult(channel.platform, kind,
                                             "matches" if same else "differs"))
    return tuple(results)


@dataclass(frozen=True)
class TokenObservation:
    """Everything at_rest.tokens_fernet judges.

    Attributes:
        ring: labels of the token-encryption keys read from the HSM.
        columns: one scan per token column.
        shared_iv_cells: valid cells whose IV another valid cell also has.
        shared_iv_groups: distinct IVs used more than once.
        shared_ciphertext_cells: valid cells whose ciphertext another cell also has.
        canary: the canary's tokens read back; empty without a canary.
        canary_note: why there is no canary, if there is none.
    """

    ring: tuple[str, ...]
    columns: tuple[FernetColumnScan, ...]
    shared_iv_cells: int
    shared_iv_groups: int
    shared_ciphertext_cells: int
    canary: tuple[CanaryTokenResult, ...] = ()
    canary_note: str = ""


def tokens_fernet_verdict(obs: TokenObservation) -> Verdict:
    """Every token cell is Fernet under the HSM ring, IVs and ciphertexts are unique, and the
    canary's tokens decrypt to exactly what was handed in."""
    details: dict[str, Any] = {
        "key_ring": list(obs.ring), "columns": [_evidence(c) for c in obs.columns],
        "shared_iv_cells": obs.shared_iv_cells, "shared_iv_groups": obs.shared_iv_groups,
        "shared_ciphertext_cells": obs.shared_ciphertext_cells,
        "canary": [_evidence(c) for c in obs.canary], "canary_note": obs.canary_note}
    problems = []
    for scan in obs.columns:
        bad = scan.rows - scan.valid
        if bad:
            platforms = ", ".join(f"{p} {c['rows'] - c['valid']} of {c['rows']}"
                                  for p, c in scan.by_platform.items() if c["rows"] > c["valid"])
            problems.append(f"{bad} of {scan.rows} cells of {scan.column} are not Fernet tokens "
                            f"that verify under the HSM key ring ({_counts(scan.failures)}"
                            + (f"; by platform: {platforms}" if platforms else "")
                            + f"; e.g. {', '.join(scan.examples[:3])})")
    if obs.shared_iv_cells:
        problems.append(f"{obs.shared_iv_cells} token cells share an IV with another cell "
                        f"({_plural(obs.shared_iv_groups, 'IV')} used more than once): Fernet "
                        "IVs must be random per token")
    if obs.shared_ciphertext_cells:
        problems.append(f"{obs.shared_ciphertext_cells} token cells share their ciphertext with "
                        "another cell")
    wrong = [c for c in obs.canary if c.result != "matches"]
    if wrong:
        problems.append("the canary's tokens do not read back as handed in: "
                        + ", ".join(f"{c.platform} {c.kind} ({c.result})" for c in wrong))
    if problems:
        return Verdict.failed("OAuth tokens are not all encrypted per row with Fernet: "
                              + "; ".join(problems) + ".", **details)
    cells = sum(scan.rows for scan in obs.columns)
    if cells == 0:
        return Verdict.error("There are no channel rows to judge, and no canary was planted: "
                             "the promise could not be observed.", **details)
    used = Counter[str]()
    for scan in obs.columns:
        used.update(scan.keys_used)
    canary = (f" The canary's {len(obs.canary)} tokens ({len(PLATFORMS)} platforms) decrypt to "
              "exactly what was handed in." if obs.canary
              else f" No canary was planted ({obs.canary_note}).")
    seen = sorted({p for s in obs.columns for p in s.by_platform if p != "other"})
    covered = f" Platforms with rows: {', '.join(seen)}." if seen else ""
    return Verdict.passed(
        f"All {cells} token cells of {', '.join(s.column for s in obs.columns)} are Fernet tokens "
        f"whose HMAC verifies under the HSM key ring ({_counts(dict(used))}); no two cells share "
        f"an IV or a ciphertext.{canary}{covered}", **details)


def channel_token_batches(db: DatabaseProbe, *, by_platform: bool,
                          batch_rows: int = TOKEN_BATCH_ROWS
                          ) -> Iterator[list[tuple[Any, bytes | None, Any, Any]]]:
    """Batches of ``(id, platform, access cell, refresh cell)``: both token columns in one pass.

    One server-side cursor over ``channels`` instead of one pass per column and
    platform: the table is read once, not twelve times, and each row crosses
    the wire once. Text arrives as stored bytes (tokens are judged as bytes;
    nothing is decoded). ``platform`` is None when the table has no such column.
    """
    return db.stream_rows("channels", ("platform" if by_platform else None,
                                       *(column for _, column in TOKEN_COLUMNS)),
                          batch_rows=batch_rows, text_as_bytes=True)


def _platform_part(value: Any) -> str:
    """The part of the evidence a channel row's platform (stored bytes or text) counts in."""
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return text if text in PLATFORMS else "other"


def observe_tokens(profile: TargetProfile, policy: Policy, known: KnownSecrets,
                   canary: Canary | None, canary_note: str = "") -> TokenObservation:
    """Stream both token columns and read the canary's rows back."""
    keys = token_key_ring(profile, policy, known)
    now = time.time()
    skew = policy.fernet.max_clock_skew_s
    duplicates = DuplicateCounter()
    stored: dict[int, tuple[Any, Any]] = {}
    with _database(profile, policy, known) as db:
        by_platform = db.has_column("channels", "platform")
        # Each platform the page names, then whatever else is there, so the
        # evidence says which platforms' tokens are (not) encrypted.
        parts = (*PLATFORMS, "other") if by_platform else ("",)
        tallies = [FernetTally(keys, now=now, max_clock_skew_s=skew, duplicates=duplicates,
                               parts=parts, part_of=_platform_part) for _ in TOKEN_COLUMNS]
        part_at = 1 if by_platform else None
        for batch in channel_token_batches(db, by_platform=by_platform):
            for value_at, tally in enumerate(tallies, 2):
                tally.add(batch, value_at, part_at)
        scans = [tally.scan(f"{table}.{column}")
                 for tally, (table, column) in zip(tallies, TOKEN_COLUMNS, strict=True)]
        if canary is not None and canary.channels:
            ids = [c.channel_id for c in canary.channels]
            stored = {row[0]: (row[1], row[2])
                      for batch in db.stream_rows("channels", [c for _, c in TOKEN_COLUMNS],
                                                  where="id = ANY(%s)", params=(ids,))
                      for row in batch}
    shared_iv, iv_groups, shared_ct = duplicates.result()
    results = (canary_token_results(canary, stored, keys, now=now, max_clock_skew_s=skew)
               if canary is not None else ())
    return TokenObservation(tuple(k.label for k in keys), tuple(scans), shared_iv, iv_groups,
                            shared_ct, results, canary_note)


# --- at_rest.password_hashes ------------------------------------------------------------------


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
    """

    column: str
    rows: int
    schemes: dict[str, int]
    costs: dict[int, int]
    examples: tuple[str, ...]
    cost_examples: tuple[str, ...] = ()


def scan_hash_cells(rows: Iterable[tuple[Any, Any]], column: str,
                    expected_cost: int | None = None) -> HashColumnScan:
    """Classify every ``(row id, value)``; never raises on any value."""
    total = 0
    schemes: Counter[str] = Counter()
    costs: Counter[int] = Counter()
    examples: list[str] = []
    cost_examples: list[str] = []
    remaining = iter(rows)
    while batch := list(itertools.islice(remaining, HASH_BATCH_ROWS)):
        # A batch of nothing but well-formed bcrypt is counted at once, unless it
        # holds a row with another cost that should be named as an example.
        histogram = bcrypt_cost_histogram([value for _, value in batch])
        if histogram is not None and (expected_cost is None or len(cost_examples) >= EXAMPLES
                                      or set(histogram) == {expected_cost}):
            total += len(batch)
            schemes[HashScheme.BCRYPT.value] += len(batch)
            costs.update(histogram)
            continue
        for row_id, value in batch:
            total += 1
            kind = classify_stored_hash(value)
            schemes[kind.scheme.value] += 1
            if kind.cost is not None:
                costs[kind.cost] += 1
                if expected_cost is not None and kind.cost != expected_cost \
                        and len(cost_examples) < EXAMPLES:
                    cost_examples.append(f"row {row_id}: cost {kind.cost}")
            elif len(examples) < EXAMPLES:
                examples.append(f"row {row_id}: {kind.scheme.value}")
    return HashColumnScan(column, total, dict(schemes), dict(costs), tuple(examples),
                          tuple(cost_examples))


@dataclass(frozen=True)
class PasswordObservation:
    """Everything at_rest.password_hashes judges.

    Attributes:
        scan: ``users.password_hash`` classified.
        canary_match: the canary password checked against its own row (one bcrypt
            verification); None without a canary.
        canary_cost: the bcrypt cost of the canary's row.
        canary_note: why there is no canary, if there is none.
    """

    scan: HashColumnScan
    canary_match: str | None = None
    canary_cost: int | None = None
    canary_note: str = ""


def password_hashes_verdict(obs: PasswordObservation, policy: Policy) -> Verdict:
    """Every password hash is well-formed bcrypt at the policy's cost; the canary verifies."""
    cost = policy.bcrypt.cost
    scan = obs.scan
    details: dict[str, Any] = {"column": scan.column, "rows": scan.rows, "schemes": scan.schemes,
                               "cost_histogram": {str(k): v for k, v in sorted(scan.costs.items())},
                               "policy_cost": cost, "canary_match": obs.canary_match,
                               "canary_cost": obs.canary_cost, "bcrypt_verifications":
                               0 if obs.canary_match is None else 1,
                               "examples": list(scan.examples + scan.cost_examples)}
    problems = []
    not_bcrypt = scan.rows - scan.schemes.get(HashScheme.BCRYPT.value, 0)
    if not_bcrypt:
        others = {k: v for k, v in scan.schemes.items() if k != HashScheme.BCRYPT.value}
        problems.append(f"{not_bcrypt} of {scan.rows} password hashes are not bcrypt "
                        f"({_counts(others)}; e.g. {', '.join(scan.examples[:3])})")
    wrong_cost = {c: n for c, n in scan.costs.items() if c != cost}
    if wrong_cost:
        listed = ", ".join(f"{n} at cost {c}" for c, n in sorted(wrong_cost.items()))
        problems.append(f"{sum(wrong_cost.values())} of {scan.rows} bcrypt hashes do not use "
                        f"work factor {cost} ({listed}; e.g. {', '.join(scan.cost_examples[:3])})")
    if obs.canary_match is not None and obs.canary_match != HashMatch.MATCH.value:
        problems.append(f"the canary's password does not verify against its own row "
                        f"({obs.canary_match})")
    if problems:
        return Verdict.failed("Account passwords are not all bcrypt with work factor "
                              f"{cost}: " + "; ".join(problems) + ".", **details)
    if scan.rows == 0:
        return Verdict.error("users.password_hash has no rows to judge.", **details)
    canary = (" The canary's password verifies against its row (1 bcrypt verification)."
              if obs.canary_match is not None else f" No canary was planted ({obs.canary_note}).")
    return Verdict.passed(f"All {scan.rows} password hashes are well-formed bcrypt with work "
                          f"factor {cost}.{canary}", **details)


def observe_passwords(profile: TargetProfile, policy: Policy, known: KnownSecrets,
                      canary: Canary | None, canary_note: str = "") -> PasswordObservation:
    with _database(profile, policy, known) as db:
        rows = (row for batch in db.stream_column("users", "password_hash") for row in batch)
        scan = scan_hash_cells(rows, "users.password_hash", policy.bcrypt.cost)
        if canary is None or canary.user_id is None:
            return PasswordObservation(scan, canary_note=canary_note)
        own = [v for batch in db.stream_column("users", "password_hash", where="id = %s",
                                               params=(canary.user_id,)) for _, v in batch]
    if not own:
        return PasswordObservation(scan, "row missing")
    kind = classify_stored_hash(own[0])
    return PasswordObservation(scan, bcrypt_check(canary.password, own[0]).value, kind.cost)


# --- at_rest.backup_codes ---------------------------------------------------------------------


@dataclass(frozen=True)
class CodeMatching:
    """Which stored row each backup code verifies against.

    Attributes:
        pairs: (code number, row id) for each code that matched a distinct row.
        unmatched_codes: numbers (1-based) of codes that matched no row.
        unmatched_rows: ids of rows no code matched.
        verifications: bcrypt verifications spent.
    """

    pairs: tuple[tuple[int, int], ...]
    unmatched_codes: tuple[int, ...]
    unmatched_rows: tuple[int, ...]
    verifications: int


def match_codes_to_rows(codes: Sequence[str], rows: Sequence[tuple[int, Any]], *,
                        check: Callable[[str, Any], HashMatch] = bcrypt_check,
                        workers: int = 2) -> CodeMatching:
    """Pair each code with the one row it verifies against, with few bcrypt verifications.

    A bcrypt check costs about 0.25 s at cost 12, so trying every pair (100) is
    too slow. Services store codes in the order they hand them out, so code *i*
    is first tried against the *i*-th row by id, all ten in parallel (bcrypt
    releases the GIL); only codes that miss are tried against the rows still
    unmatched, stopping at the first match. In order this costs 10 checks; in
    the worst case (reversed order) 10 + 50, still fewer than the 100 pairs. A
    row matched by one code is never tried again: a
    bcrypt hash that verifies two different codes would be a collision.
    """
    ordered = sorted(rows, key=lambda r: r[0])
    verifications = 0
    matched: dict[int, int] = {}
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        diagonal = list(range(min(len(codes), len(ordered))))
        answers = list(pool.map(lambda i: check(codes[i], ordered[i][1]), diagonal))
        verifications += len(diagonal)
        for i, answer in zip(diagonal, answers, strict=True):
            if answer is HashMatch.MATCH:
                matched[i] = ordered[i][0]
    taken = set(matched.values())
    for i, code in enumerate(codes):
        if i in matched:
            continue
        for j, (row_id, stored) in enumerate(ordered):
            if row_id in taken or j == i:
                continue
            verifications += 1
            if check(code, stored) is HashMatch.MATCH:
                matched[i] = row_id
                taken.add(row_id)
                break
    return CodeMatching(
        pairs=tuple(sorted((i + 1, r) for i, r in matched.items())),
        unmatched_codes=tuple(i + 1 for i in range(len(codes)) if i not in matched),
        unmatched_rows=tuple(r for r, _ in ordered if r not in taken),
        verifications=verifications)


def secrets_in_text(text: str, secrets: Sequence[str], label: str) -> tuple[str, ...]:
    """Labels (``label N``) of the secrets found in ``text`` in any encoding."""
    known = KnownSecrets()
    for i, secret in enumerate(secrets):
        known.add(secret, f"{label} {i + 1}")
    hits = SecretSweep.from_known(known).scan_bytes(text.encode("utf-8", "replace"), "answer")
    return tuple(sorted({hit.label.split(" (")[0] for hit in hits}))


@dataclass(frozen=True)
class BackupCodesObservation:
    """Everything at_rest.backup_codes judges.

    Attributes:
        codes_returned: how many codes ``POST /mfa/setup`` answered.
        shown_again: codes found again in the ``GET /mfa`` answer.
        rows: the canary's ``mfa_backup_codes`` rows.
        row_schemes: scheme → rows.
        matching: which row each code verifies against.
        redeem_first: status of the first redeem of one code.
        redeem_second: status of redeeming the same code again.
    """

    codes_returned: int
    shown_again: tuple[str, ...]
    rows: int
    row_schemes: dict[str, int]
    matching: CodeMatching
    redeem_first: int
    redeem_second: int


def backup_codes_verdict(obs: BackupCodesObservation) -> Verdict:
    """Ten codes once, never shown again, one bcrypt row per code, each code usable once."""
    details: dict[str, Any] = _evidence(obs)
    problems = []
    if obs.codes_returned != BACKUP_CODES_PROMISED:
        problems.append(f"setup returned {obs.codes_returned} codes, not "
                        f"{BACKUP_CODES_PROMISED}")
    if obs.shown_again:
        problems.append(f"GET /mfa returned {len(obs.shown_again)} of the backup codes again "
                        "(the server did not forget them)")
    not_bcrypt = obs.rows - obs.row_schemes.get(HashScheme.BCRYPT.value, 0)
    if not_bcrypt:
        problems.append(f"{not_bcrypt} of the canary's {obs.rows} code rows are not bcrypt "
                        f"({_counts({k: v for k, v in obs.row_schemes.items() if k != 'bcrypt'})})")
    if obs.rows != obs.codes_returned:
        problems.append(f"the canary has {obs.rows} code rows for {obs.codes_returned} codes")
    if obs.matching.unmatched_codes:
        problems.append(f"codes {', '.join(map(str, obs.matching.unmatched_codes))} match no "
                        "stored bcrypt hash of their own")
    if obs.redeem_first != 200:
        problems.append(f"a fresh code was refused (HTTP {obs.redeem_first})")
    elif obs.redeem_second < 400:
        problems.append(f"a used code was accepted again (HTTP {obs.redeem_second}): codes are "
                        "not one-time")
    if problems:
        return Verdict.failed("MFA backup codes break the promise: " + "; ".join(problems) + ".",
                              **details)
    return Verdict.passed(
        f"Setup returned {obs.codes_returned} codes, GET /mfa shows none of them, the canary has "
        f"{obs.rows} bcrypt rows each verified by exactly one code "
        f"({obs.matching.verifications} bcrypt verifications), and a code worked once "
        f"(HTTP {obs.redeem_first}) then was refused (HTTP {obs.redeem_second}).", **details)


def observe_backup_codes(session: CanarySession, profile: TargetProfile, policy: Policy,
                         known: KnownSecrets) -> BackupCodesObservation:
    canary = session.canary
    codes = list(canary.backup_codes)
    session.ensure_session()
    status_text = str(session.api.mfa_status().body) + " " + str(canary.mfa_status_body)
    shown = secrets_in_text(status_text, codes, "code") if codes else ()
    with _database(profile, policy, known) as db:
        rows = [row for batch in db.stream_column("mfa_backup_codes", "code_hash",
                                                  where="user_id = %s", params=(canary.user_id,))
                for row in batch]
    schemes = Counter(classify_stored_hash(v).scheme.value for _, v in rows)
    matching = match_codes_to_rows(codes, rows, workers=os.cpu_count() or 2)
    first = second = 0
    if codes:
        first = session.api.redeem_backup_code(codes[-1]).status
        second = session.api.redeem_backup_code(codes[-1]).status
    return BackupCodesObservation(len(codes), shown, len(rows), dict(schemes), matching,
                                  first, second)


# --- at_rest.recovery_tokens ------------------------------------------------------------------


@dataclass(frozen=True)
class RecoveryObservation:
    """Everything at_rest.recovery_tokens judges.

    Attributes:
        mail_received: a recovery mail with a token reached the canary's inbox.
        in_request_answer: the token appeared in the API's answer to the request.
        row_found: the canary has a recovery_tokens row made for this request.
        row_scheme: what that row's stored value is.
        row_match: the mailed token checked against the row (one bcrypt verification).
        row_is_token: the row holds the token itself.
        confirm_first: status of the first confirm with the token.
        confirm_second: status of confirming again with the same token.
    """

    mail_received: bool
    in_request_answer: bool
    row_found: bool
    row_scheme: str
    row_match: str
    row_is_token: bool
    confirm_first: int
    confirm_second: int


def recovery_tokens_verdict(obs: RecoveryObservation) -> Verdict:
    """The token is only in the mail, stored as bcrypt, and works exactly once."""
    details: dict[str, Any] = _evidence(obs)
    if not obs.mail_received:
        return Verdict.error("No recovery mail with a token reached the canary's inbox, so "
                             "the token could not be followed.", **details)
    problems = []
    if obs.in_request_answer:
        problems.append("the token was also in the API's answer to the request, not only in "
                        "the mail")
    if not obs.row_found:
        problems.append("no recovery_tokens row was stored for the request")
    elif obs.row_is_token:
        problems.append("the stored row holds the token itself, in plaintext")
    elif obs.row_scheme != HashScheme.BCRYPT.value:
        problems.append(f"the stored row is not a bcrypt hash ({obs.row_scheme})")
    elif obs.row_match != HashMatch.MATCH.value:
        problems.append(f"the mailed token does not verify against the stored hash "
                        f"({obs.row_match})")
    if obs.confirm_first != 200:
        problems.append(f"the mailed token was refused at first use (HTTP {obs.confirm_first})")
    elif obs.confirm_second < 400:
        problems.append(f"the token worked a second time (HTTP {obs.confirm_second}): it is not "
                        "one-time")
    if problems:
        return Verdict.failed("MFA recovery tokens break the promise: " + "; ".join(problems)
                              + ".", **details)
    return Verdict.passed(
        "The recovery token reached the canary only in the mail link, is stored as a bcrypt hash "
        "that the mailed token verifies (1 bcrypt verification), and worked once "
        f"(HTTP {obs.confirm_first}) then was refused (HTTP {obs.confirm_second}).", **details)


def observe_recovery(session: CanarySession, profile: TargetProfile, policy: Policy,
                     known: KnownSecrets) -> RecoveryObservation:
    canary = session.canary
    with _database(profile, policy, known) as db:
        before = max((k for batch in db.stream_column("recovery_tokens", "token_hash",
                                                      where="user_id = %s",
                                                      params=(canary.user_id,))
                      for k, _ in batch), default=0)
    # A fresh token: one from the start of the run may have expired by now.
    mail = session.fresh_recovery()
    token = mail.token
    if token is None:
        return RecoveryObservation(False, False, False, "", "", False, 0, 0)
    in_answer = bool(secrets_in_text(str(canary.recovery_request_body), [token], "token"))
    with _database(profile, policy, known) as db:
        rows = [row for batch in db.stream_column("recovery_tokens", "token_hash",
                                                  where="user_id = %s AND id > %s",
                                                  params=(canary.user_id, before))
                for row in batch]
    stored = max(rows, key=lambda r: r[0])[1] if rows else None
    scheme = classify_stored_hash(stored).scheme.value if rows else ""
    is_token = isinstance(stored, str) and hmac.compare_digest(stored.encode(), token.encode())
    match = bcrypt_check(token, stored).value if rows else ""
    first = session.api.confirm_recovery(canary.email, token)
    second = session.api.confirm_recovery(canary.email, token)
    for answer in (first, second):
        if isinstance(answer.body, dict) and isinstance(answer.body.get("token"), str):
            known.add(answer.body["token"], "canary session token (recovery)")
    return RecoveryObservation(True, in_answer, bool(rows), scheme, match, is_token,
                               first.status, second.status)


# --- at_rest.data_inventory -------------------------------------------------------------------


ColumnClass = Literal["fernet", "bcrypt", "keyed_index", "enum", "metadata", "listed_plaintext"]


class ColumnRule(BaseModel):
    """One classification rule of ``fixtures/policy/inventory.toml``.

    Attributes:
        match: glob over ``table.column``.
        class_: the class the column must be (TOML key ``class``).
        why: the reason, shown in the inventory.
        page_item: for ``listed_plaintext``: the page's list item that allows it.
        values: for ``enum``: the allowed values.
        format: for ``keyed_index``: ``hex64``.
        canary: for ``keyed_index``: the canary value it is derived from (``email``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    match: str
    class_: ColumnClass = Field(alias="class")
    why: str = ""
    page_item: str = ""
    values: tuple[str, ...] = ()
    format: Literal["hex64"] | None = None
    canary: Literal["email"] | None = None


class InventoryRules(BaseModel):
    """The whole rules file.

    Attributes:
        schema_version: version of the file format.
        metadata_types: data types that cannot hold free text.
        sample_rows: cells sampled per column for content checks.
        column: the rules, first match wins.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = 1
    metadata_types: tuple[str, ...]
    sample_rows: int = Field(200, ge=1)
    column: tuple[ColumnRule, ...] = ()

    def rule_for(self, name: str) -> ColumnRule | None:
        return next((r for r in self.column if fnmatch.fnmatchcase(name, r.match)), None)


def load_inventory_rules(path: Path = INVENTORY_PATH) -> InventoryRules:
    """Read the rules; ProbeError naming the file and key on any problem."""
    return load_toml_model(path, InventoryRules, what="inventory rules", error=ProbeError)


@dataclass(frozen=True)
class ColumnFinding:
    """How one column was classified, and whether its content agrees.

    Attributes:
        column: ``table.column``.
        data_type: its SQL type.
        category: ``fernet``, ``bcrypt``, ``keyed_index``, ``enum``, ``metadata``,
            ``listed_plaintext``, ``empty``, or ``plaintext`` (not allowed).
        basis: why (the rule, the type, or the content).
        sampled: cells sampled.
        ok: whether the column keeps the promise.
        problem: what is wrong, when not ok.
    """

    column: str
    data_type: str
    category: str
    basis: str
    sampled: int
    ok: bool
    problem: str = ""


_HEX64 = re.compile(r"[0-9a-f]{64}")


def _is_fernet(value: str) -> bool:
    try:
        parse_fernet_token(value)
    except FernetTokenError:
        return False
    return True


def _is_bcrypt(value: str) -> bool:
    return classify_stored_hash(value).scheme is HashScheme.BCRYPT


def unkeyed_digests(value: str) -> set[str]:
    """Hex digests anyone can compute from ``value`` (as given and lower-cased)."""
    found = set()
    for text in {value, value.strip().lower()}:
        for name in ("md5", "sha1", "sha256", "sha512"):
            found.add(hashlib.new(name, text.encode("utf-8")).hexdigest())
    return found


def classify_column(info: ColumnInfo, rules: InventoryRules, samples: Sequence[str],
                    canary_cell: tuple[str, str] | None = None) -> ColumnFinding:
    """Classify one column from the rules, its type and its sampled content.

    ``canary_cell`` is (canary value, the column's cell on the canary's row) for
    keyed indexes derived from a canary value.
    """
    name, sampled = info.name, len(samples)

    def finding(category: str, basis: str, problem: str = "") -> ColumnFinding:
        return ColumnFinding(name, info.data_type, category, basis, sampled, not problem, problem)

    def count_bad(test: Callable[[str], bool]) -> int:
        return sum(1 for value in samples if not test(value))

    rule = rules.rule_for(name)
    if rule is not None:
        basis = f"rule {rule.match!r}" + (f": {rule.why}" if rule.why else "")
        if rule.class_ == "fernet":
            bad = count_bad(_is_fernet)
            return finding("fernet", basis, f"{bad} of {sampled} sampled cells are not Fernet "
                           "tokens: stored in plaintext" if bad else "")
        if rule.class_ == "bcrypt":
            bad = count_bad(_is_bcrypt)
            return finding("bcrypt", basis, f"{bad} of {sampled} sampled cells are not bcrypt "
                           "hashes" if bad else "")
        if rule.class_ == "keyed_index":
            bad = count_bad(lambda v: bool(_HEX64.fullmatch(v))) if rule.format else 0
            if bad:
                return finding("keyed_index", basis, f"{bad} of {sampled} sampled cells are not "
                               "64 hex digits")
            if canary_cell is not None and canary_cell[1] in unkeyed_digests(canary_cell[0]):
                return finding("keyed_index", basis, "the canary's cell is an unkeyed digest of "
                               "its plaintext (anyone can compute it): not a keyed index")
            note = "; canary cell is not an unkeyed digest" if canary_cell is not None else ""
            return finding("keyed_index", basis + note)
        if rule.class_ == "enum":
            allowed = set(rule.values)
            odd = sorted({v for v in samples if v not in allowed})
            return finding("enum", basis, f"{len(odd)} sampled values are outside the allowed "
                           f"set {sorted(allowed)}" if odd else "")
        if rule.class_ == "listed_plaintext":
            return finding("listed_plaintext", f"the page's list: {rule.page_item!r}"
                           + (f" ({rule.why})" if rule.why else ""))
        return finding("metadata", basis)
    if info.data_type in rules.metadata_types:
        kind = ("foreign key" if info.is_foreign_key else "primary key" if info.is_primary_key
                else info.data_type)
        return finding("metadata", f"type {info.data_type} ({kind}): holds no text")
    if not samples:
        return finding("empty", "no non-NULL cell to classify at audit time")
    if count_bad(_is_fernet) == 0:
        return finding("fernet", "content: every sampled cell is a Fernet token")
    if count_bad(_is_bcrypt) == 0:
        return finding("bcrypt", "content: every sampled cell is a bcrypt hash")
    return finding("plaintext", f"content of {sampled} sampled cells",
                   "stored in plaintext and not on the page's list")


@dataclass(frozen=True)
class InventoryObservation:
    """Everything at_rest.data_inventory judges.

    Attributes:
        columns: one finding per readable column.
        unreadable_tables: tables the auditor role cannot read (not classified).
    """

    columns: tuple[ColumnFinding, ...]
    unreadable_tables: tuple[str, ...] = ()


def data_inventory_verdict(obs: InventoryObservation) -> Verdict:
    """Every column is encrypted, hashed, keyed, metadata, or on the page's plaintext list."""
    table = [_evidence(c) for c in obs.columns]
    details: dict[str, Any] = {"inventory": table, "unreadable_tables": list(obs.unreadable_tables),
                               "categories": dict(Counter(c.category for c in obs.columns))}
    bad = [c for c in obs.columns if not c.ok]
    if bad:
        return Verdict.failed(
            f"{_plural(len(bad), 'column')} of {len(obs.columns)} hold data the page does not "
            "allow in plaintext: " + "; ".join(f"{c.column} ({c.data_type}): {c.problem}"
                                                for c in bad) + ".", **details)
    if obs.unreadable_tables:
        return Verdict.error(
            f"The auditor role cannot read {', '.join(obs.unreadable_tables)}, so the inventory "
            "is incomplete: grant it SELECT on every table.", **details)
    if not obs.columns:
        return Verdict.error("The auditor role sees no column at all.", **details)
    return Verdict.passed(
        f"All {len(obs.columns)} columns are accounted for: "
        + ", ".join(f"{n} {k}" for k, n in sorted(details["categories"].items()))
        + "; none holds plaintext outside the page's list.", **details)


def observe_inventory(profile: TargetProfile, policy: Policy, known: KnownSecrets,
                      canary: Canary | None, rules: InventoryRules) -> InventoryObservation:
    findings = []
    with _database(profile, policy, known) as db:
        seen = db.visible_tables()
        for info in seen.columns:
            rule = rules.rule_for(info.name)
            needs_content = (rule is not None and rule.class_ in ("fernet", "bcrypt",
                                                                  "keyed_index", "enum")) or \
                (rule is None and info.data_type not in rules.metadata_types)
            samples = db.sample_column(info, rules.sample_rows) if needs_content else ()
            canary_cell = None
            if (rule is not None and rule.canary == "email" and canary is not None
                    and canary.user_id is not None and info.schema == "public"):
                cells = [v for batch in db.stream_column(info.table, info.column,
                                                         where="id = %s",
                                                         params=(canary.user_id,))
                         for _, v in batch]
                if cells and isinstance(cells[0], str):
                    canary_cell = (canary.email, cells[0])
            findings.append(classify_column(info, rules, samples, canary_cell))
    return InventoryObservation(tuple(findings), seen.unreadable_tables)


# --- at_rest.postgres_version -----------------------------------------------------------------


def postgres_version_verdict(server: DatabaseServer) -> Verdict:
    """The server's major version is 15, as the page says."""
    details = {"server_version_num": server.version_num, "server_version": server.version,
               "role": server.role, "database": server.database}
    if server.major == 15:
        return Verdict.passed(f"PostgreSQL {server.version} (server_version_num "
                              f"{server.version_num}): major version 15.", **details)
    return Verdict.failed(f"The database is PostgreSQL {server.version} (major {server.major}), "
                          "not PostgreSQL 15 as the page says.", **details)


# --- at_rest.volume_encryption ----------------------------------------------------------------


def attested_verdict(profile: TargetProfile, claim_id: str, what_to_show: str) -> Verdict:
    """PASS on a non-empty attestation file the profile names for the claim; MANUAL without
    one; ERROR naming the file when it is empty or cannot be read."""
    path = profile.attestations.get(claim_id)
    if path is None:
        return Verdict.manual(what_to_show)
    try:
        content = path.read_bytes()
    except OSError as exc:
        return Verdict.error(f"The attestation for {claim_id} ({path}) cannot be read: "
                             f"{exc.strerror or exc}.", attestation=str(path))
    if not content.strip():
        # An empty file attests nothing; it must not turn into PASS.
        return Verdict.error(f"The attestation for {claim_id} ({path}) is empty, so it attests "
                             f"nothing. {what_to_show}", attestation=str(path),
                             size=len(content))
    digest = hashlib.sha256(content).hexdigest()
    return Verdict.passed(f"Attested by {path} (sha256 {digest[:16]}…); no machine check can "
                          "see volumes from here.", attestation=str(path), sha256=digest)


# --- backups: shared ----------------------------------------------------------------------------


def operations_unavailable(profile: TargetProfile, needs: Sequence[str],
                           by_hand: str) -> str | None:
    """Why the harness may not run the operations a check needs (a MANUAL message), or None."""
    ops = profile.operations
    missing = [name for name in needs if getattr(ops, name) is None]
    if missing:
        return (f"The profile lacks operations.{', operations.'.join(missing)}, so the harness "
                f"cannot exercise this itself. By hand: {by_hand}")
    if not ops.allow_destructive:
        return ("The profile does not allow the harness to run operations against this target "
                f"(operations.allow_destructive = false). By hand: {by_hand}")
    return None


def _command_timeout(profile: TargetProfile, policy: Policy) -> float:
    return min(profile.operations.timeout_s, policy.timeouts.command_s)


def _run(profile: TargetProfile, policy: Policy, known: KnownSecrets,
         name: str) -> backup_probe.CommandRun:
    argv = getattr(profile.operations, name)
    assert argv is not None
    return backup_probe.run_command(name, argv, _command_timeout(profile, policy), known)


def _newest(files: Sequence[backup_probe.BackupFile]) -> backup_probe.BackupFile | None:
    return max(files, key=lambda f: (f.mtime, f.name)) if files else None


# --- at_rest.backup_encrypted -----------------------------------------------------------------


@dataclass(frozen=True)
class BackupObservation:
    """A backup the harness made and what its bytes show.

    Attributes:
        run: the backup command.
        inspection: the new file's markers, entropy and secret hits; None if no new file.
    """

    run: backup_probe.CommandRun
    inspection: backup_probe.BackupInspection | None


def backup_encrypted_verdict(obs: BackupObservation) -> Verdict:
    """A fresh backup holds no dump header, is not merely compressed, holds no known secret,
    and is large enough to be sampled and looks like ciphertext."""
    details: dict[str, Any] = {"command": _evidence(obs.run),
                               "backup": _evidence(obs.inspection) if obs.inspection else None}
    if not obs.run.succeeded:
        return Verdict.error(f"The backup command failed, so no backup could be judged: "
                             f"{obs.run.describe()}.", **details)
    found = obs.inspection
    if found is None:
        return Verdict.error("The backup command succeeded but no new file appeared in the "
                             "backup directory.", **details)
    problems = []
    if found.markers:
        problems.append("it shows " + ", ".join(found.markers))
    if found.compression:
        # Compression is not encryption: anyone can decompress it.
        if found.decompressed_markers:
            inside = (f"; its first {found.decompressed} decompressed bytes show "
                      + ", ".join(found.decompressed_markers))
        elif found.decompressed:
            inside = f"; its first {found.decompressed} decompressed bytes show no dump marker"
        else:
            inside = "; its content could not be decompressed here to look inside"
        problems.append(f"it is compressed, not encrypted ({found.compression}){inside}")
    if found.secret_hits:
        problems.append("it holds known secrets in plaintext: " + ", ".join(
            sorted({f"{h.label} at offset {h.offset}" for h in found.secret_hits})[:5]))
    if found.sampled >= MIN_ENTROPY_SAMPLE and found.entropy_bits < MIN_CIPHERTEXT_ENTROPY:
        problems.append(f"its bytes carry {found.entropy_bits:.2f} bits per byte "
                        f"({found.encoding}), below the {MIN_CIPHERTEXT_ENTROPY} of ciphertext")
    if problems:
        return Verdict.failed(f"The fresh backup {found.name} is not encrypted: "
                              + "; ".join(problems) + ".", **details)
    if found.sampled < MIN_ENTROPY_SAMPLE:
        return Verdict.error(f"The fresh backup {found.name} is only {found.sampled} bytes, too "
                             f"small (under {MIN_ENTROPY_SAMPLE}) for its entropy to show whether "
                             "it is ciphertext: encryption could not be observed.", **details)
    return Verdict.passed(f"The fresh backup {found.name} ({found.size} bytes) shows no dump "
                          "header, no compression magic number and no known secret; its content "
                          f"is {found.entropy_bits:.2f} bits per byte ({found.encoding}).",
                          **details)


def observe_backup(profile: TargetProfile, policy: Policy,
                   known: KnownSecrets) -> BackupObservation:
    directory = profile.operations.backup_dir
    assert directory is not None
    before = {(f.name, f.mtime) for f in backup_probe.list_backups(directory)}
    run = _run(profile, policy, known, "backup")
    if not run.succeeded:
        return BackupObservation(run, None)
    new = [f for f in backup_probe.list_backups(directory) if (f.name, f.mtime) not in before]
    newest = _newest(new)
    if newest is None:
        return BackupObservation(run, None)
    inspection = backup_probe.inspect_backup(directory / newest.name,
                                             SecretSweep.from_known(known))
    return BackupObservation(run, inspection)


# --- at_rest.backup_retention -----------------------------------------------------------------


@dataclass(frozen=True)
class RetentionObservation:
    """What pruning did to planted backups of known ages.

    Attributes:
        prune: the prune command.
        retention_days: the policy's retention.
        old_name: a copy of the newest backup planted as older than the retention.
        old_removed: whether pruning removed it.
        young_name: a copy planted as younger than the retention.
        young_kept: whether pruning kept it.
        newest_name: the newest real backup.
        newest_kept: whether pruning kept it.
    """

    prune: backup_probe.CommandRun
    retention_days: int
    old_name: str
    old_removed: bool
    young_name: str
    young_kept: bool
    newest_name: str
    newest_kept: bool


def backup_retention_verdict(obs: RetentionObservation) -> Verdict:
    """Pruning removes backups past the retention and keeps the ones within it."""
    details: dict[str, Any] = _evidence(obs)
    if not obs.prune.succeeded:
        return Verdict.error(f"The prune command failed: {obs.prune.describe()}.", **details)
    problems = []
    if not obs.old_removed:
        problems.append(f"a backup older than {obs.retention_days} days ({obs.old_name}) "
                        "was kept")
    if not obs.young_kept:
        problems.append(f"a backup within {obs.retention_days} days ({obs.young_name}) was "
                        "deleted")
    if not obs.newest_kept:
        problems.append(f"the newest backup ({obs.newest_name}) was deleted")
    if problems:
        return Verdict.failed(f"Backups are not kept on a {obs.retention_days}-day rolling "
                              "retention: " + "; ".join(problems) + ".", **details)
    return Verdict.passed(f"Pruning removed a backup older than {obs.retention_days} days and "
                          "kept one within them and the newest.", **details)


def observe_retention(profile: TargetProfile, policy: Policy,
                      known: KnownSecrets) -> RetentionObservation:
    directory = profile.operations.backup_dir
    assert directory is not None
    newest = _newest(backup_probe.list_backups(directory))
    if newest is None:
        made = _run(profile, policy, known, "backup")
        if not made.succeeded:
            raise ProbeError(f"no backup to plant copies of, and {made.describe()}")
        newest = _newest(backup_probe.list_backups(directory))
        if newest is None:
            raise ProbeError(f"no backup in {directory} even after running the backup command")
    days = policy.backups.retention_days
    source = directory / newest.name
    old = backup_probe.plant_aged_copy(source, days + 10)
    young = backup_probe.plant_aged_copy(source, max(days - 5, 1))
    try:
        prune = _run(profile, policy, known, "prune_backups")
        return RetentionObservation(prune, days, old.name, not old.exists(), young.name,
                                    young.exists(), newest.name, source.exists())
    finally:
        # The planted copies are the harness's; none may outlive the check.
        old.unlink(missing_ok=True)
        young.unlink(missing_ok=True)


# --- at_rest.restore_drill --------------------------------------------------------------------


@dataclass(frozen=True)
class DrillObservation:
    """A drill run by the harness, with row counts it can hold the drill's report to.

    The harness counts rows, takes a backup, then changes the database through
    the canary, then runs the drill. A drill that restored the backup reports
    the counts taken before the backup; one that reports the live database's
    counts (nothing restored) shows the canary's change.

    Attributes:
        backup: the backup command run just before the drill.
        drill: the drill command.
        counts_at_backup: rows per table just before the backup.
        counts_at_drill: rows per table just before the drill (after the change).
        changed_tables: tables whose counts the canary's change moved.
        entry: the drill log's new last entry; None if the drill wrote none.
        restored: rows per table the entry reports as restored.
        previous_drill_age_days: age of the newest drill before this one, if any.
    """

    backup: backup_probe.CommandRun
    drill: backup_probe.CommandRun | None
    counts_at_backup: dict[str, int]
    counts_at_drill: dict[str, int]
    changed_tables: tuple[str, ...]
    entry: dict[str, Any] | None
    restored: dict[str, int]
    previous_drill_age_days: float | None


def restored_counts(entry: dict[str, Any]) -> dict[str, int]:
    """Rows per table a drill log entry says it restored (``tables: {t: {restored: n}}``)."""
    tables = entry.get("tables")
    found: dict[str, int] = {}
    if isinstance(tables, dict):
        for name, value in tables.items():
            count = value.get("restored") if isinstance(value, dict) else value
            if isinstance(count, int) and not isinstance(count, bool):
                found[str(name).removeprefix("public.")] = count
    return found


def restore_drill_verdict(obs: DrillObservation, policy: Policy) -> Verdict:
    """The drill restores the backup it names (its counts are the backup's, not the live
    database's), reports success, and the previous drill is recent enough."""
    details: dict[str, Any] = _evidence(obs)
    if not obs.backup.succeeded:
        return Verdict.error(f"The backup before the drill failed: {obs.backup.describe()}.",
                             **details)
    if obs.drill is None:
        return Verdict.error("The drill was not run.", **details)
    if obs.entry is None:
        if not obs.drill.succeeded:
            return Verdict.failed(f"The restore drill failed: {obs.drill.describe()}.", **details)
        return Verdict.failed("The restore drill wrote no entry to the drill log, so there is no "
                              "record that it restored anything.", **details)
    problems = []
    if obs.entry.get("ok") is not True or not obs.drill.succeeded:
        reason = obs.entry.get("error") or obs.drill.describe()
        problems.append(f"the drill reports failure ({reason})")
    if not obs.restored:
        problems.append("the drill's log entry does not say how many rows it restored")
    mismatched = {t: (n, obs.restored.get(t)) for t, n in obs.counts_at_backup.items()
                  if obs.restored and obs.restored.get(t) != n}
    if mismatched:
        live = [t for t in obs.changed_tables
                if obs.restored.get(t) == obs.counts_at_drill.get(t)]
        listed = ", ".join(f"{t}: {got} restored, {want} in the backup"
                           for t, (want, got) in sorted(mismatched.items()))
        problems.append(f"the restored row counts are not the backup's ({listed})"
                        + (f"; for {', '.join(live)} they are the live database's counts at "
                           "drill time, so nothing was restored" if live else ""))
    max_age = policy.backups.max_drill_age_days
    if obs.previous_drill_age_days is not None and obs.previous_drill_age_days > max_age:
        problems.append(f"before this audit the last drill was {obs.previous_drill_age_days:.0f} "
                        f"days ago (policy: at most {max_age})")
    if problems:
        return Verdict.failed("The restore drill does not show a working restore: "
                              + "; ".join(problems) + ".", **details)
    discriminating = (f" The canary changed {', '.join(obs.changed_tables)} after the backup, "
                      "and the drill reported the backup's counts, not the live ones."
                      if obs.changed_tables else
                      " (The database could not be changed between backup and drill, so a drill "
                      "reporting live counts could not be told apart.)")
    previous = (f" The previous drill was {obs.previous_drill_age_days:.1f} days earlier."
                if obs.previous_drill_age_days is not None
                else " There was no drill before this audit's own.")
    return Verdict.passed(
        f"The drill restored the fresh backup with row counts matching the database at backup "
        f"time in all {len(obs.counts_at_backup)} tables.{discriminating}{previous}", **details)


def _table_counts(profile: TargetProfile, policy: Policy, known: KnownSecrets) -> dict[str, int]:
    with _database(profile, policy, known) as db:
        counts = db.visible_tables().row_counts
    return {name.removeprefix("public."): n for name, n in counts.items()}


def _entry_age_days(entry: dict[str, Any], now: float) -> float | None:
    stamp = entry.get("time")
    if not isinstance(stamp, str):
        return None
    try:
        return (now - datetime.fromisoformat(stamp).timestamp()) / 86400
    except ValueError:
        return None


def observe_drill(profile: TargetProfile, policy: Policy, known: KnownSecrets,
                  change: Callable[[], None] | None) -> DrillObservation:
    log_path = profile.operations.drill_log
    assert log_path is not None
    now = time.time()
    earlier = backup_probe.read_drill_log(log_path)
    ages = [a for a in (_entry_age_days(e, now) for e in earlier) if a is not None]
    previous_age = min(ages) if ages else None
    at_backup = _table_counts(profile, policy, known)
    backup = _run(profile, policy, known, "backup")
    if not backup.succeeded:
        return DrillObservation(backup, None, at_backup, {}, (), None, {}, previous_age)
    if change is not None:
        change()
    at_drill = _table_counts(profile, policy, known)
    changed = tuple(sorted(t for t in at_drill if at_drill.get(t) != at_backup.get(t)))
    drill = _run(profile, policy, known, "restore_drill")
    entries = backup_probe.read_drill_log(log_path)
    entry = entries[-1] if len(entries) > len(earlier) else None
    restored = restored_counts(entry) if entry is not None else {}
    return DrillObservation(backup, drill, at_backup, at_drill, changed, entry, restored,
                            previous_age)


# --- at_rest.plaintext_sweep ------------------------------------------------------------------


@dataclass(frozen=True)
class SweepArea:
    """One place searched for known secrets.

    Attributes:
        name: ``database``, ``redis``, ``logs`` or ``backups``.
        searched: whether it was searched.
        locations: columns, keys or files searched.
        bytes_scanned: bytes searched.
        hits: where secrets were found (label and location, never the value).
        hits_total: how many occurrences in all.
        problem: why it was not (fully) searched: unreadable, not reachable.
        note: why it was not searched when the profile does not name it.
    """

    name: str
    searched: bool
    locations: int = 0
    bytes_scanned: int = 0
    hits: tuple[SweepHit, ...] = ()
    hits_total: int = 0
    problem: str = ""
    note: str = ""


@dataclass(frozen=True)
class SweepObservation:
    """Everything at_rest.plaintext_sweep judges.

    Attributes:
        secrets: how many known secrets were searched for.
        needles: how many encoded forms of them.
        areas: one per place.
        canary_secrets: how many of the secrets are the canary account's (planted
            through the API, so they travel wherever the service stores user data).
        canary_note: why there is no canary, if there is none.
        short_secrets: known secrets too short (4 or 5 bytes, e.g. a PIN) to search
            for as substrings of stored data, where they would match by chance;
            not among ``secrets``.
    """

    secrets: int
    needles: int
    areas: tuple[SweepArea, ...]
    canary_secrets: int = 0
    canary_note: str = ""
    short_secrets: int = 0


#: What a human must do to search each area by hand, when the harness could not.
SWEEP_BY_HAND: dict[str, str] = {
    "database": "dump the service's database (`pg_dump --data-only votriz > db.sql`) and search "
                "it with `grep -c -F -f needles.txt db.sql`",
    "redis": "list every key (`redis-cli --scan`) and search each value (`redis-cli --raw DUMP "
             "KEY`, or the RDB/AOF files under `redis-cli CONFIG GET dir`) with "
             "`grep -c -F -f needles.txt`",
    "logs": "search every log file of the service (application, workers, edge) with "
            "`grep -r -c -F -f needles.txt LOG_DIR`",
    "backups": "take a fresh backup and search it, and every file in the backup store, with "
               "`grep -c -F -f needles.txt FILE`",
}
#: The promised areas of the sweep: the page says no sensitive data is stored in plaintext.
SWEEP_AREAS = tuple(SWEEP_BY_HAND)
#: Every secret the canary account plants is registered under a label starting so.
CANARY_LABEL_PREFIX = "canary "
_NEEDLES = ("(needles.txt: a test account's password, e-mail, OAuth tokens, backup codes and "
            "recovery token, each raw, base64, base64url, hex and URL-encoded)")


def plaintext_sweep_verdict(obs: SweepObservation) -> Verdict:
    """No known secret, in any encoding, anywhere the service stores data."""
    details: dict[str, Any] = {
        "secrets": obs.secrets, "needles": obs.needles, "canary_secrets": obs.canary_secrets,
        "canary_note": obs.canary_note, "short_secrets_not_swept": obs.short_secrets,
        "areas": [{"name": a.name, "searched": a.searched, "locations": a.locations,
                   "bytes": a.bytes_scanned, "hits_total": a.hits_total,
                   "hits": [h.describe() for h in a.hits[:200]], "problem": a.problem,
                   "note": a.note} for a in obs.areas]}
    hits = [h for a in obs.areas for h in a.hits]
    if hits:
        # One entry per place (column, key or file), with the secrets found there.
        places: dict[str, tuple[set[str], int, int]] = {}
        for hit in hits:
            labels, first, count = places.get(hit.location, (set(), hit.offset, 0))
            labels.add(hit.label.split(" (")[0])
            places[hit.location] = (labels, min(first, hit.offset), count + 1)
        listed = "; ".join(
            f"{where} ({_plural(count, 'occurrence')}"
            + ("" if where.startswith(("postgres:", "redis:")) else f", first at offset {first}")
            + f": {', '.join(sorted(labels))})"
            for where, (labels, first, count) in sorted(places.items())[:12])
        more = f"; and {len(places) - 12} more places" if len(places) > 12 else ""
        total = sum(a.hits_total for a in obs.areas)
        return Verdict.failed(f"Known secrets are stored in plaintext ({total} occurrences in "
                              f"{_plural(len(places), 'place')}): {listed}{more}.", **details)
    by_name = {a.name: a for a in obs.areas}
    skipped = [a.name for a in obs.areas if not a.searched]
    skipped += [name for name in SWEEP_AREAS if name not in by_name]
    not_searched = "; ".join(
        f"{name} ({by_name[name].note if name in by_name else 'not observed'})"
        if name not in by_name or by_name[name].note else name for name in skipped)
    problems = [f"{a.name}: {a.problem}" for a in obs.areas if a.problem]
    if problems:
        return Verdict.error("No known secret was found, but not everything could be searched: "
                             + "; ".join(problems) + "."
                             + (f" Not searched at all: {not_searched}." if skipped else ""),
                             **details)
    searched = [a for a in obs.areas if a.searched]
    where = ", ".join(f"{a.name} ({a.locations} places, {a.bytes_scanned} bytes)"
                      for a in searched)
    if skipped:
        # A sweep that did not look everywhere the page promises cannot say "nowhere".
        by_hand = "; ".join(f"{name}: {SWEEP_BY_HAND.get(name, 'search it')}" for name in skipped)
        return Verdict.manual(
            (f"No known secret was found in {where}, but " if searched else "")
            + f"{'these areas were' if searched else 'These areas were'} not searched: "
            f"{not_searched}. By hand {_NEEDLES}: {by_hand}.", **details)
    if obs.canary_secrets == 0:
        note = f" ({obs.canary_note})" if obs.canary_note else ""
        return Verdict.manual(
            f"No canary secret was registered{note}, so the sweep of {where} looked only for "
            f"{_plural(obs.secrets, 'other known secret')}, none of them user data planted through "
            "the service. By hand: plant a test account through the API (sign up, set up MFA, connect "
            f"a channel of each of {', '.join(PLATFORMS)}, request a recovery mail), then search "
            f"the database, Redis, the logs and the backups {_NEEDLES}.", **details)
    short = (f" ({_plural(obs.short_secrets, 'known secret')} of 4 or 5 bytes not searched: "
             "as substrings they would match by chance)" if obs.short_secrets else "")
    return Verdict.passed(
        f"None of {obs.secrets} known secrets ({obs.canary_secrets} of them the canary's; "
        f"{obs.needles} encoded forms: raw, base64, base64url, hex, URL-encoded) occurs in "
        + where + "." + short, **details)


def _area(name: str, run: Callable[[SweepReport], None]) -> SweepArea:
    report = SweepReport()
    try:
        run(report)
    except ProbeError as exc:
        return SweepArea(name, True, report.locations, report.bytes_scanned, tuple(report.hits),
                         report.hits_total, str(exc))
    problem = ("unreadable: " + "; ".join(report.unreadable[:5])) if report.unreadable else ""
    return SweepArea(name, True, report.locations, report.bytes_scanned, tuple(report.hits),
                     report.hits_total, problem)


def observe_sweep(profile: TargetProfile, policy: Policy, known: KnownSecrets,
                  canary_note: str = "") -> SweepObservation:
    sweep = SecretSweep.from_known(known)
    areas = []

    def database(report: SweepReport) -> None:
        with _database(profile, policy, known) as db:
            sweep.sweep(db.dump(), report)

    def redis_store(report: SweepReport) -> None:
        sweep.sweep(redis_contents(profile, policy, known), report)

    log_dir = profile.log_dir
    backup_dir = profile.operations.backup_dir

    def logs(report: SweepReport) -> None:
        if log_dir is not None:
            sweep.sweep_files([log_dir], report)
        if profile.backend == "docker" and profile.docker is not None:
            # What the containers wrote to their standard output, as the engine keeps it.
            client = docker_engine.docker_client(policy)
            try:
                containers = docker_engine.project_containers(profile.docker.project, client)
                outputs = docker_engine.container_logs(containers, 256 << 20)
            finally:
                client.close()
            sweep.sweep(((log.where, [log.data]) for log in outputs), report)
            cut = [log.where for log in outputs if log.truncated]
            if cut:
                raise ProbeError(f"searched only the first 256 MiB of {', '.join(cut)}")

    def backups(report: SweepReport) -> None:
        assert backup_dir is not None
        sweep.sweep_files([backup_dir], report)

    areas.append(_area("database", database) if profile.database is not None
                 else SweepArea("database", False, note="no [database] in the profile"))
    areas.append(_area("redis", redis_store) if profile.redis is not None
                 else SweepArea("redis", False, note="no [redis] in the profile"))
    areas.append(_area("logs", logs) if log_dir is not None or profile.docker is not None
                 else SweepArea("logs", False, note="no log directory (local.log_dir, docker.log_dir) "
                                                    "or [docker] project in the profile"))
    areas.append(_area("backups", backups) if backup_dir is not None
                 else SweepArea("backups", False, note="no operations.backup_dir in the profile"))
    swept = [label for secret, label in known.items() if len(secret) >= known.word_below]
    canary = sum(1 for label in swept if label.startswith(CANARY_LABEL_PREFIX))
    return SweepObservation(len(swept), sweep.needle_count, tuple(areas), canary, canary_note,
                            short_secrets=len(known) - len(swept))


# --- missing profile sections ------------------------------------------------------------------
#
# A profile that does not name the database or the HSM does not make the
# page's promise go away: the check becomes MANUAL, with what a human must run
# and show, never NOT_APPLICABLE (which would pass the gate unobserved).


def tokens_fernet_unavailable(profile: TargetProfile) -> Verdict | None:
    """MANUAL when the profile lacks what at_rest.tokens_fernet reads, else None."""
    missing = [what for what, section in (("no [database] section", profile.database),
                                          ("no [hsm] section", profile.hsm)) if section is None]
    if not missing:
        return None
    return Verdict.manual(
        f"The profile has {' and '.join(missing)}, so the token columns cannot be read or their "
        "keys obtained. By hand: on the service's database run `SELECT id, platform, "
        "access_token_enc, refresh_token_enc FROM channels`, and with the token-encryption keys "
        "from the HSM (objects under <key_namespace>token-encryption/) show that every cell is a "
        "Fernet token (version byte 0x80) whose HMAC verifies and that decrypts under one of those "
        "keys (e.g. `cryptography.fernet.MultiFernet([...]).decrypt(cell)`), for each of the "
        f"platforms {', '.join(PLATFORMS)}, and that no two cells share an IV (the 16 bytes after the "
        "version byte and timestamp) or a ciphertext.", missing=missing)


def password_hashes_unavailable(profile: TargetProfile, policy: Policy) -> Verdict | None:
    """MANUAL when the profile names no database for at_rest.password_hashes, else None."""
    if profile.database is not None:
        return None
    cost = policy.bcrypt.cost
    return Verdict.manual(
        "The profile has no [database] section, so users.password_hash cannot be read. By hand: "
        "on the service's database run `SELECT substr(password_hash, 1, 7) AS prefix, "
        "length(password_hash) AS len, count(*) FROM users GROUP BY 1, 2` and show that every "
        f"row is a 60-character bcrypt hash with work factor {cost} (prefix $2b${cost:02d}$, "
        f"$2a${cost:02d}$ or $2y${cost:02d}$), and that a test account's password verifies "
        "against its own row (`bcrypt.checkpw`).", missing=["no [database] section"])


def data_inventory_unavailable(profile: TargetProfile) -> Verdict | None:
    """MANUAL when the profile names no database for at_rest.data_inventory, else None."""
    if profile.database is not None:
        return None
    return Verdict.manual(
        "The profile has no [database] section, so no inventory of the stored columns can be "
        "taken. By hand: list every column with `SELECT table_schema, table_name, column_name, "
        "data_type FROM information_schema.columns WHERE table_schema NOT IN ('pg_catalog', "
        "'information_schema')` as a role that can read every table, and show for each that it "
        "is Fernet-encrypted, a bcrypt hash, a keyed index, an enum or metadata, or on the page's "
        "list of what is not encrypted (fixtures/policy/inventory.toml), with sample cells of "
        "every text column.", missing=["no [database] section"])


# --- the checks -------------------------------------------------------------------------------


def _canary_and_note(request: pytest.FixtureRequest,
                     profile: TargetProfile) -> tuple[CanarySession | None, str]:
    reason = _canary_unavailable(profile)
    return (None, reason) if reason else (_canary_session(request, profile), "")


@pytest.mark.claims("REST-TOKENS-FERNET")
def check_tokens_fernet(request: pytest.FixtureRequest, profile: TargetProfile, policy: Policy,
                        known_secrets: KnownSecrets, evidence: EvidenceRecorder) -> None:
    unavailable = tokens_fernet_unavailable(profile)
    if unavailable is not None:
        evidence.conclude(unavailable)
    session, note = _canary_and_note(request, profile)
    obs = observe_tokens(profile, policy, known_secrets,
                         session.canary if session else None, note)
    verdict = tokens_fernet_verdict(obs)
    evidence.attach("tokens-fernet", verdict.details)
    evidence.conclude(verdict)


@pytest.mark.claims("REST-PASSWORDS-BCRYPT12")
def check_password_hashes(request: pytest.FixtureRequest, profile: TargetProfile, policy: Policy,
                          known_secrets: KnownSecrets, evidence: EvidenceRecorder) -> None:
    unavailable = password_hashes_unavailable(profile, policy)
    if unavailable is not None:
        evidence.conclude(unavailable)
    session, note = _canary_and_note(request, profile)
    obs = observe_passwords(profile, policy, known_secrets,
                            session.canary if session else None, note)
    verdict = password_hashes_verdict(obs, policy)
    evidence.attach("password-hashes", verdict.details)
    evidence.conclude(verdict)


@pytest.mark.claims("REST-MFA-BACKUP-CODES")
def check_backup_codes(request: pytest.FixtureRequest, profile: TargetProfile, policy: Policy,
                       known_secrets: KnownSecrets, evidence: EvidenceRecorder) -> None:
    reason = _canary_unavailable(profile) or (
        "the profile names no database" if profile.database is None else None)
    if reason:
        evidence.manual(f"Backup codes can only be followed with a canary account, and {reason}. "
                        "By hand: set up MFA on a test account, check GET /api/v1/mfa never shows "
                        "the codes, that mfa_backup_codes holds one bcrypt hash per code, and "
                        "that a code works once only.")
    session = _canary_session(request, profile)
    assert session is not None
    verdict = backup_codes_verdict(observe_backup_codes(session, profile, policy, known_secrets))
    evidence.attach("backup-codes", verdict.details)
    evidence.conclude(verdict)


@pytest.mark.claims("REST-MFA-RECOVERY-TOKENS")
def check_recovery_tokens(request: pytest.FixtureRequest, profile: TargetProfile, policy: Policy,
                          known_secrets: KnownSecrets, evidence: EvidenceRecorder) -> None:
    reason = _canary_unavailable(profile) or (
        "the profile names no database" if profile.database is None else None)
    if reason:
        evidence.manual(f"Recovery tokens can only be followed with a canary account, and "
                        f"{reason}. By hand: request a recovery mail for a test account, check "
                        "the token appears only in the mail, that recovery_tokens stores a bcrypt "
                        "hash the token verifies, and that the link works once only.")
    session = _canary_session(request, profile)
    assert session is not None
    verdict = recovery_tokens_verdict(observe_recovery(session, profile, policy, known_secrets))
    evidence.attach("recovery-tokens", verdict.details)
    evidence.conclude(verdict)


@pytest.mark.claims("SCOPE-ONLY-LISTED-PLAINTEXT", "OVERVIEW-NO-PLAINTEXT")
def check_data_inventory(request: pytest.FixtureRequest, profile: TargetProfile, policy: Policy,
                         known_secrets: KnownSecrets, evidence: EvidenceRecorder) -> None:
    unavailable = data_inventory_unavailable(profile)
    if unavailable is not None:
        evidence.conclude(unavailable)
    rules = load_inventory_rules()
    session, _ = _canary_and_note(request, profile)
    obs = observe_inventory(profile, policy, known_secrets,
                            session.canary if session else None, rules)
    verdict = data_inventory_verdict(obs)
    evidence.attach("inventory", verdict.details)
    evidence.conclude(verdict)


@pytest.mark.claims("REST-DB-PG15")
def check_postgres_version(profile: TargetProfile, policy: Policy, known_secrets: KnownSecrets,
                           evidence: EvidenceRecorder) -> None:
    if profile.database is None:
        evidence.manual("The profile names no database. By hand: run `SELECT version()` on the "
                        "service's database and attach the answer.")
    with _database(profile, policy, known_secrets) as db:
        assert db.server is not None
        verdict = postgres_version_verdict(db.server)
    evidence.attach("postgres-version", verdict.details)
    evidence.conclude(verdict)


@pytest.mark.claims("REST-DB-ENCRYPTED-VOLUMES")
def check_volume_encryption(profile: TargetProfile, evidence: EvidenceRecorder) -> None:
    verdict = attested_verdict(profile, "REST-DB-ENCRYPTED-VOLUMES", VOLUMES_ATTESTATION)
    evidence.conclude(verdict)


@pytest.mark.claims("REST-BACKUPS-ENCRYPTED")
def check_backup_encrypted(profile: TargetProfile, policy: Policy, known_secrets: KnownSecrets,
                           evidence: EvidenceRecorder) -> None:
    reason = operations_unavailable(
        profile, ("backup", "backup_dir"),
        "take a backup and show that its file has no PGDMP or '-- PostgreSQL database dump' "
        "header, does not start with a compression magic number (gzip 1f8b, zstd 28b52ffd, "
        "xz fd377a585a00, bzip2 'BZh', zip 'PK\\x03\\x04') and reads as ciphertext "
        "(e.g. `head -c 64 FILE | xxd`), and name the key that encrypts it.")
    if reason:
        evidence.manual(reason)
    verdict = backup_encrypted_verdict(observe_backup(profile, policy, known_secrets))
    evidence.attach("backup-encrypted", verdict.details)
    evidence.conclude(verdict)


@pytest.mark.claims("REST-BACKUPS-RETENTION")
def check_backup_retention(profile: TargetProfile, policy: Policy, known_secrets: KnownSecrets,
                           evidence: EvidenceRecorder) -> None:
    reason = operations_unavailable(
        profile, ("backup", "prune_backups", "backup_dir"),
        f"list the backup store and show no backup older than {policy.backups.retention_days} "
        "days exists while every day within them has one (storage lifecycle rule).")
    if reason:
        evidence.manual(reason)
    verdict = backup_retention_verdict(observe_retention(profile, policy, known_secrets))
    evidence.attach("backup-retention", verdict.details)
    evidence.conclude(verdict)


@pytest.mark.claims("REST-BACKUPS-DRILL")
def check_restore_drill(request: pytest.FixtureRequest, profile: TargetProfile, policy: Policy,
                        known_secrets: KnownSecrets, evidence: EvidenceRecorder) -> None:
    reason = operations_unavailable(
        profile, ("backup", "restore_drill", "drill_log"),
        f"show the drill log's entries of the last {policy.backups.max_drill_age_days} days, each "
        "restoring a named backup into a scratch database with row counts compared.")
    if reason:
        evidence.manual(reason)
    if profile.database is None:
        evidence.manual("The profile names no database to compare the drill's row counts with. "
                        "By hand: attach the drill log's last entry and the live row counts.")
    session, _ = _canary_and_note(request, profile)
    change = None
    if session is not None:
        def change() -> None:
            # A brand adds rows to brands and analytics_counters after the backup.
            session.ensure_session()
            session.api.create_brand(f"votriz-audit drill marker {session.canary.run_id}", "audit")
    verdict = restore_drill_verdict(observe_drill(profile, policy, known_secrets, change), policy)
    evidence.attach("restore-drill", verdict.details)
    evidence.conclude(verdict)


@pytest.mark.claims("OVERVIEW-NO-PLAINTEXT")
def check_plaintext_sweep(request: pytest.FixtureRequest, profile: TargetProfile, policy: Policy,
                          known_secrets: KnownSecrets, evidence: EvidenceRecorder) -> None:
    # The canary must exist before the sweep, so that there is something to find.
    session, note = _canary_and_note(request, profile)
    if session is None and len(known_secrets) == 0:
        evidence.manual(f"No secret is known to search for ({note}). By hand: plant a test "
                        "account's values and search the database, Redis, logs and backups.")
    verdict = plaintext_sweep_verdict(observe_sweep(profile, policy, known_secrets, note))
    evidence.attach("plaintext-sweep", verdict.details)
    evidence.conclude(verdict)

