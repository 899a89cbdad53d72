"""The OAuth token columns as stored, and the key ring that must verify them.

The token-encryption keys are read from the HSM whole
(:func:`harness.token_ring.token_key_ring`, their values registered as known
secrets); both token columns of ``channels`` are read in one ``COPY`` per key
range, the ranges by workers on every core (:mod:`harness.parallel_scan`: threads of
this process where the native engine judges with the GIL released, else processes), each
judged by :class:`~harness.column_scans.FernetTally` (split by platform where the table
says it) and merged exactly; and the canary's own rows are decrypted and
compared with what was handed in.
"""

from __future__ import annotations

import hmac
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.canaries import PLATFORMS, Canary
from harness.column_scans import TOKEN_BATCH_ROWS, DuplicateCounter, FernetColumnScan, FernetTally
from harness.formats.fernet import FernetKey, FernetTokenError, decrypt_fernet_token
from harness.formats.fernet_engine import NATIVE, engine_name
from harness.parallel_scan import plan_scan, results_of, shared_cells, worker_pool
from harness.policy import Policy
from harness.probes.database import DatabaseProbe, open_database
from harness.probes.range_workers import RangeRead, TokenRangeTask, TokenRing, judge_token_range
from harness.profile import TargetProfile
from harness.redaction import KnownSecrets
from harness.sampling import SampleNote
from harness.token_ring import token_key_ring

TOKEN_COLUMNS = (("channels", "access_token_enc"), ("channels", "refresh_token_enc"))
#: How the key ranges are shared out where the native engine judges: ``threads`` of this
#: process, or ``processes`` (as the Python path always is; ``VOTRIZ_TOKEN_WORKERS=processes``
#: asks for them, to compare).
TOKEN_WORKERS_ENV = "VOTRIZ_TOKEN_WORKERS"


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
        sample: how the rows were sampled; None when every row was judged.
    """

    ring: tuple[str, ...]
    columns: tuple[FernetColumnScan, ...]
    shared_iv_cells: int
    shared_iv_groups: int
    shared_ciphertext_cells: int
    canary: tuple[CanaryTokenResult, ...] = ()
    canary_note: str = ""
    sample: SampleNote | None = None


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


def token_scan_in_threads() -> bool:
    """Whether the token scan's workers are threads of this process (else processes).

    The native engine judges with the GIL released: threads then use every core without
    starting interpreters (one interpreter's memory whatever ``--jobs``);
    ``VOTRIZ_TOKEN_WORKERS=processes`` asks for processes all the same (to compare).
    """
    return (engine_name() == NATIVE
            and os.environ.get(TOKEN_WORKERS_ENV, "threads").strip() != "processes")


def observe_tokens(profile: TargetProfile, policy: Policy, known: KnownSecrets,
                   canary: Canary | None, canary_note: str = "") -> TokenObservation:
    """Judge both token columns (every row, or the policy's sample), on every core the policy
    allows, and read the canary's rows back."""
    keys = token_key_ring(profile, policy, known)
    now = time.time()
    skew = policy.fernet.max_clock_skew_s
    stored: dict[int, tuple[Any, Any]] = {}
    with open_database(profile, policy, known) as db:
        by_platform = db.has_column("channels", "platform")
        plan = plan_scan(db, "channels", policy)
        # Each platform the page names, then whatever else is there, so the
        # evidence says which platforms' tokens are (not) encrypted.
        parts = (*PLATFORMS, "other") if by_platform else ("",)
        tallies = [FernetTally(keys, now=now, max_clock_skew_s=skew, duplicates=DuplicateCounter(),
                               parts=parts) for _ in TOKEN_COLUMNS]
        with tempfile.TemporaryDirectory(prefix="votriz-audit-scan-") as spill_dir, \
                worker_pool(plan.jobs, threads=token_scan_in_threads()) as submit:
            ring = TokenRing(keys, now, skew)
            # The key ranges, then the rows whose id is NULL where it may be (in no range).
            tasks = [TokenRangeTask(RangeRead(profile, policy, low, high, plan.sample_percent,
                                              null_key),
                                    ring, parts, TOKEN_COLUMNS, Path(spill_dir) / f"part-{index}")
                     for index, (low, high, null_key) in enumerate(plan.reads)]
            judged = results_of([submit(judge_token_range, task) for task in tasks])
            # Exact across parts: every part's fingerprints are counted together.
            shared_iv, iv_groups, shared_ct = shared_cells([spill for _, spill in judged],
                                                           submit, plan.jobs)
        for counts, _ in judged:
            for tally, column_counts in zip(tallies, counts, strict=True):
                tally.absorb(column_counts)
        scans = [tally.scan(f"{table}.{column}")
                 for tally, (table, column) in zip(tallies, TOKEN_COLUMNS, strict=True)]
        if canary is not None and canary.channels:
            ids = [c.channel_id for c in canary.channels]
            stored = {row[0]: (row[1], row[2])
                      for batch in db.stream_rows("channels", [c for _, c in TOKEN_COLUMNS],
                                                  where="id = ANY(%s)", params=(ids,))
                      for row in batch}
    results = (canary_token_results(canary, stored, keys, now=now, max_clock_skew_s=skew)
               if canary is not None else ())
    return TokenObservation(tuple(k.label for k in keys), tuple(scans), shared_iv, iv_groups,
                            shared_ct, results, canary_note,
                            plan.sampled(scans[0].rows if scans else 0))
