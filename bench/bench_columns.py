"""Benchmark the at-rest column checks at scale: Fernet tokens, bcrypt format, plaintext sweep.

    python bench/bench_columns.py                       # 1M channel rows, 1M users, 1 GiB sweep
    python bench/bench_columns.py --rows 10000000 --tokens-by pgcrypto   # 10M rows (issue #20)
    python bench/bench_columns.py --repeats 5 --jobs 1 --out bench/results/columns.json

What is timed is the checks' own code, not a copy of it, and beside each check
(issue #20) **the limit in the same run**: the bare read of the same rows,
the way the check reads them at best (the same key ranges, worker processes,
read-only connections and ``COPY`` blocks, drained without parsing or
judging). Check and bare read alternate run by run, so both see the same
load; ``over_raw_read`` (check rows/s ÷ bare read rows/s) is the figure to
compare from run to run on a shared machine.

- **Fernet validation** (issue #20: ≥ 300k rows/s on 2 cores and ≥ 0.5x the
  bare read; ≤ 300 MB peak at 10M rows whatever the workers). A scratch
  PostgreSQL 15 cluster gets the reference service's schema
  (``system_under_test/api/schema.sql``) and ``--rows`` channel rows over the
  five platforms, both token columns encrypted by the service's own
  ``FieldCipher`` (or, with ``--tokens-by pgcrypto``, by the server: the same
  Fernet format with a fresh random IV per token, for runs of tens of
  millions of rows), seeded by child processes so seeding does not count
  towards the measured memory. Then ``observe_tokens``
  (``harness/probes/stored_tokens.py``) runs as the check runs it (key ranges
  read by ``[scan] jobs`` worker processes, one read-only ``COPY`` each as a
  SELECT-only auditor role, every token's HMAC and padding, duplicate
  IV/ciphertext counting merged across the workers), with only the HSM read
  replaced by the bench's key ring. Each repeat runs in a fresh child
  process: its own peak RSS (``rss_peak_mib``), its largest worker's
  (``worker_rss_peak_mib``) and their bound together
  (``rss_total_peak_mib_at_most`` = own + workers * largest worker); CPU
  seconds include the workers'. rows/s counts channel rows (two tokens each).
- **bcrypt format** (≥ 2M rows/s from PostgreSQL): ``observe_passwords``
  (``harness/probes/passwords.py``) over ``users.password_hash``
  (bcrypt-shaped, cost 12: the format audit verifies nothing), end to end
  from PostgreSQL beside the bare read of the same column (the check's own
  paged read, each chunk counted instead of classified), and
  ``scan_hash_cells`` over the same values already in memory. Each run also
  records the server's CPU seconds (``server_cpu_seconds``: the backends,
  from ``/proc``), which the client's ``cpu_seconds`` leave out.
- **Plaintext sweep** (≥ 300 MB/s over ≥ 1 GB with 50 canaries in 4 encodings):
  a dump file of ``--sweep-gib`` GiB of pg_dump-like text (COPY lines with
  ids, e-mail addresses, Fernet-shaped tokens, bcrypt-shaped hashes, JSON)
  with each of the 50 canaries planted once in each of its 4 encodings (raw,
  base64, hex, HEX: 200 needles) at random offsets, swept by
  ``SecretSweep.sweep_files`` as the backup and log areas are; every planted
  needle must be found. Also the database area's path
  (``harness.probes.database_sweep.sweep_database``, ≥ 200 MB/s) over the
  channels table, beside the same reads searched for no needle; both record
  ``server_cpu_seconds`` too.

The machine is shared (2 cores; Docker builds and test runs may be going on):
each figure is the median of ``--repeats`` runs, with the spread, the CPU
seconds the measured processes used (and the rate per CPU second, which says
what the code costs whatever the load), and the load average before and after.
Everything is printed and written to ``--out`` as JSON.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack, contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.kept_cluster import (  # noqa: E402
    ClusterRefused,
    kept_postgres,
    read_key,
    seeded_record,
    wanted,
    write_marker,
)
from bench.machine import ProcessTreePeaks, cpu_model, load_average  # noqa: E402
from harness.formats.fernet import FernetKey  # noqa: E402
from harness.policy import Policy, PolicyError, load_policy  # noqa: E402
from harness.profile import TargetProfile  # noqa: E402
from harness.redaction import KnownSecrets  # noqa: E402
from harness.sweep import SecretSweep, SweepReport  # noqa: E402
from tests.scratch_postgres import ScratchPostgres, scratch_postgres  # noqa: E402

SCHEMA = ROOT / "system_under_test" / "api" / "schema.sql"
PLATFORMS = ("instagram", "linkedin", "twitter", "tiktok", "youtube")
KEY_LABEL = "votriz/token-encryption/v1"
BCRYPT_ALPHABET = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
MB = 1_000_000
MIB = 1 << 20


#: The server's settings for every run; a kept cluster is seeded with durability off too
#: (a seeding that does not finish is thrown away; the reads measured are the same).
SETTINGS = ("max_wal_size=4GB", "checkpoint_timeout=30min")
SEEDING_SETTINGS = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")


def prepare(cluster: ScratchPostgres) -> None:
    """The reference service's schema, a SELECT-only auditor role, one user and one brand
    (the channels' owner)."""
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        conn.execute(SCHEMA.read_text(encoding="utf-8"))
        conn.execute("CREATE ROLE auditor LOGIN")
        conn.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO auditor")
        conn.execute("INSERT INTO users (email_enc, email_index, password_hash)"
                     " VALUES ('x', 'owner', 'x')")
        conn.execute("INSERT INTO brands (owner_id, name, industry) VALUES (1, 'b', 'i')")


@contextmanager
def bench_cluster() -> Iterator[ScratchPostgres]:
    """A scratch PostgreSQL 15 cluster, prepared (``prepare``), removed at the end."""
    with scratch_postgres("bench-pg-", settings=SETTINGS, stop="fast",
                          stop_timeout_s=300) as cluster:
        prepare(cluster)
        yield cluster


# --- seeding (child processes) ------------------------------------------------------------------


def _seed_channels_part(dsn: str, start: int, stop: int, raw_key: bytes) -> int:
    """Insert channel rows start..stop-1, tokens by the reference service's FieldCipher."""
    from system_under_test.api.fieldcrypto import FieldCipher
    from system_under_test.api.keyring import KeyRing

    ring = KeyRing(token_keys={1: raw_key}, jwt_secret=b"j" * 32, email_index_key=b"e" * 32,
                   provider_keys={}, db_password="", redis_password="")
    cipher = FieldCipher(ring)
    with psycopg.connect(dsn, autocommit=True) as conn, conn.cursor() as cur, cur.copy(
            "COPY channels (brand_id, platform, external_account, access_token_enc,"
            " refresh_token_enc) FROM STDIN") as copy:
        for i in range(start, stop):
            copy.write_row((1, PLATFORMS[i % len(PLATFORMS)], f"acct-{i}",
                            cipher.encrypt(f"oauth-access-{i:010d}-{'a' * 40}"),
                            cipher.encrypt(f"oauth-refresh-{i:010d}-{'r' * 40}")))
    return stop - start


def _seed_users_part(dsn: str, start: int, stop: int) -> int:
    rng = random.Random(start)
    with psycopg.connect(dsn, autocommit=True) as conn, conn.cursor() as cur, cur.copy(
            "COPY users (email_enc, email_index, password_hash) FROM STDIN") as copy:
        for i in range(start, stop):
            copy.write_row((f"enc-{i}", f"index-{i}",
                            "$2b$12$" + "".join(rng.choices(BCRYPT_ALPHABET, k=53))))
    return stop - start


#: Fernet per the spec, made by the server (pgcrypto): a fresh random IV per call.
SQL_FERNET = r"""
CREATE EXTENSION IF NOT EXISTS pgcrypto;
CREATE FUNCTION bench_fernet(plain bytea, signing bytea, encryption bytea, stamp bigint)
RETURNS text LANGUAGE sql VOLATILE AS $$
  SELECT translate(encode(body || hmac(body, signing, 'sha256'), 'base64'), E'+/\n', '-_')
  FROM (SELECT '\x80'::bytea || int8send(stamp) || iv
               || encrypt_iv(plain, encryption, iv, 'aes-cbc/pad:pkcs') AS body
        FROM (SELECT gen_random_bytes(16) AS iv) AS fresh) AS token
$$;
"""


def _seed_channels_sql(dsn: str, start: int, stop: int, raw_key: bytes) -> int:
    """Insert channel rows start..stop-1 with Fernet tokens made by the server (pgcrypto):
    the same format as FieldCipher's, at a fraction of the seeding time (for 10M+ rows)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO channels (brand_id, platform, external_account, access_token_enc,"
            " refresh_token_enc)"
            " SELECT 1, (ARRAY['instagram','linkedin','twitter','tiktok','youtube'])[1 + g %% 5],"
            "  'acct-' || g,"
            "  bench_fernet(convert_to('oauth-access-' || lpad(g::text, 10, '0') || '-'"
            "               || repeat('a', 40), 'UTF8'), %(s)s, %(e)s, %(t)s),"
            "  bench_fernet(convert_to('oauth-refresh-' || lpad(g::text, 10, '0') || '-'"
            "               || repeat('r', 40), 'UTF8'), %(s)s, %(e)s, %(t)s)"
            " FROM generate_series(%(a)s::bigint, %(b)s::bigint) AS g",
            {"s": raw_key[:16], "e": raw_key[16:], "t": int(time.time()) - 60, "a": start,
             "b": stop - 1})
    return stop - start


def seed(cluster: ScratchPostgres, rows: int, users: int, raw_key: bytes,
         workers: int, tokens_by: str = "fieldcipher") -> dict[str, float]:
    """Fill channels and users in ``workers`` child processes; VACUUM ANALYZE. Tokens are made
    by the reference service's FieldCipher, or by the server (``tokens_by="pgcrypto"``)."""
    started = time.perf_counter()
    if tokens_by == "pgcrypto":
        with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
            conn.execute(SQL_FERNET)
    channels_part = _seed_channels_sql if tokens_by == "pgcrypto" else _seed_channels_part
    pool = multiprocessing.get_context("spawn").Pool(workers)
    try:
        step = max(1, -(-rows // (workers * 4)))
        channel_jobs = [pool.apply_async(channels_part,
                                         (cluster.dsn(), s, min(s + step, rows), raw_key))
                        for s in range(0, rows, step)]
        step_u = max(1, -(-users // (workers * 2)))
        # Row 1 is the brand's owner, made with the schema.
        user_jobs = [pool.apply_async(_seed_users_part, (cluster.dsn(), s, min(s + step_u, users)))
                     for s in range(1, users, step_u)]
        seeded = sum(job.get() for job in channel_jobs)
        seeded_users = sum(job.get() for job in user_jobs)
    finally:
        pool.close()
        pool.join()
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
        conn.execute("CHECKPOINT")
        sizes = conn.execute("SELECT pg_total_relation_size('channels'),"
                             " pg_total_relation_size('users'), pg_database_size('votriz')"
                             ).fetchone() or (0, 0, 0)
    return {"channel_rows": seeded, "users": seeded_users + 1,
            "channels_table_mib": round(sizes[0] / MIB), "users_table_mib": round(sizes[1] / MIB),
            "database_mib": round(sizes[2] / MIB),
            "seed_seconds": round(time.perf_counter() - started, 1)}


# --- measurements (each in a fresh child process) -----------------------------------------------


def _policy(jobs: int | None, path: Path | None = None) -> Policy:
    """The audit's policy (the default one, or ``--policy``), with ``--jobs`` if given."""
    policy = load_policy(path)
    return policy if jobs is None else policy.with_scan(jobs=jobs)


def _cpu_seconds() -> float:
    """CPU seconds of this process and of its finished workers (the scan's own processes)."""
    own, workers = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
        resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + workers.ru_utime + workers.ru_stime


def _peaks(jobs: int | None) -> dict[str, float]:
    """Peak resident memory: this process, its largest worker, and at most both together."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    worker = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    workers = jobs or len(os.sched_getaffinity(0))
    # ru_maxrss of the children is the largest one's; the workers run at the same time, so
    # together they hold at most that many times it.
    return {"rss_peak_mib": own, "worker_rss_peak_mib": worker,
            "rss_total_peak_mib_at_most": own + workers * worker}


def _raw_read_child(profile: TargetProfile, table: str, columns: tuple[str, ...],
                    jobs: int | None, policy_path: Path | None = None) -> dict[str, Any]:
    """The limit: the same rows the check reads, the way it reads them, only counted (no
    judgement, no row split): for channels the same key ranges, connections and COPY blocks on
    the same number and kind of workers (threads where the native token engine judges); for
    users the check's own paged read (the chunks of pages joined on the server, the same
    readers in the same exported snapshot), each chunk counted instead of classified."""
    from bench.column_drain import drain_range as drain  # light for the spawned workers
    from harness.parallel_scan import plan_scan, results_of, worker_pool
    from harness.probes.database import DatabaseProbe
    from harness.probes.stored_tokens import token_scan_in_threads

    policy = _policy(jobs, policy_path)
    if table == "users":
        return _raw_hash_read(profile, policy)
    threads = token_scan_in_threads()
    cpu, wall = _cpu_seconds(), time.perf_counter()
    with DatabaseProbe(profile, policy) as db:
        plan = plan_scan(db, table, policy)
    with worker_pool(plan.jobs, threads=threads) as submit:
        parts = results_of([submit(drain, profile, policy, table, columns, low, high, null_key)
                            for low, high, null_key in plan.reads])
    wall, cpu = time.perf_counter() - wall, _cpu_seconds() - cpu
    return {"seconds": wall, "cpu_seconds": cpu, "bytes": sum(b for b, _ in parts),
            "rows": sum(r for _, r in parts), "workers": plan.jobs, "threads": threads}


def _raw_hash_read(profile: TargetProfile, policy: Policy) -> dict[str, Any]:
    """``users.password_hash`` read as ``observe_passwords`` reads it, every chunk counted."""
    import threading

    from harness.column_scans import HashTally
    from harness.probes.database import DatabaseProbe
    from harness.probes.passwords import classify_column
    from harness.probes.pg_reads import JoinedChunk

    size, lock = [0], threading.Lock()

    def counted(chunk: JoinedChunk, tally: HashTally) -> bool:
        tally.rows += chunk.rows
        with lock:
            size[0] += len(chunk.joined)
        return True

    cpu, wall = _cpu_seconds(), time.perf_counter()
    with DatabaseProbe(profile, policy) as db:
        tally, _ = classify_column(db, profile, policy, KnownSecrets(), take=counted)
    wall, cpu = time.perf_counter() - wall, _cpu_seconds() - cpu
    return {"seconds": wall, "cpu_seconds": cpu, "bytes": size[0], "rows": tally.rows,
            "read": tally.read, "threads": True}


def _observe_tokens_child(profile: TargetProfile, raw_key: bytes, jobs: int | None = None,
                          policy_path: Path | None = None) -> dict[str, Any]:
    from checks.at_rest.tokens_fernet import tokens_fernet_verdict
    from harness.probes import stored_tokens

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    key = FernetKey(raw_key, KEY_LABEL)
    # The only thing replaced: the key ring comes from here, not from an HSM.
    stored_tokens.token_key_ring = lambda profile, policy, known: (key,)  # type: ignore[assignment]
    policy = _policy(jobs, policy_path)
    cpu, wall = _cpu_seconds(), time.perf_counter()
    obs = stored_tokens.observe_tokens(profile, policy, KnownSecrets(), None, "bench")
    verdict = tokens_fernet_verdict(obs)
    wall, cpu = time.perf_counter() - wall, _cpu_seconds() - cpu
    return {"seconds": wall, "cpu_seconds": cpu, "outcome": verdict.outcome.value,
            "cells": sum(c.rows for c in obs.columns), "valid": sum(c.valid for c in obs.columns),
            # Which engine judged the cells (native or python; absent before the native one).
            "engine": "+".join(sorted({getattr(c, "engine", "python") for c in obs.columns})),
            "rss_before_mib": rss_before / 1024, **_peaks(jobs)}


def _observe_passwords_child(profile: TargetProfile, jobs: int | None = None,
                             policy_path: Path | None = None) -> dict[str, Any]:
    from harness.probes.passwords import observe_passwords

    policy = _policy(jobs, policy_path)
    cpu, wall = _cpu_seconds(), time.perf_counter()
    obs = observe_passwords(profile, policy, KnownSecrets(), None, "bench")
    wall, cpu = time.perf_counter() - wall, _cpu_seconds() - cpu
    return {"seconds": wall, "cpu_seconds": cpu, "rows": obs.scan.rows,
            "schemes": obs.scan.schemes, "costs": {str(k): v for k, v in obs.scan.costs.items()},
            "read": obs.scan.read, **_peaks(jobs)}


def _classify_in_memory_child(dsn: str) -> dict[str, Any]:
    from harness.column_scans import scan_hash_cells

    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT id, password_hash FROM users").fetchall()
    cpu, wall = time.process_time(), time.perf_counter()
    scan = scan_hash_cells(iter(rows), "users.password_hash", 12)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"seconds": wall, "cpu_seconds": cpu, "rows": scan.rows}


def _sweep_database_child(profile: TargetProfile, needles: list[tuple[bytes, str]],
                          policy_path: Path | None = None) -> dict[str, Any]:
    from harness.probes.database import DatabaseProbe
    from harness.probes.database_sweep import sweep_database

    sweep = SecretSweep(needles)
    report = SweepReport()
    policy = load_policy(policy_path)
    with DatabaseProbe(profile, policy) as db:
        columns = tuple(c for c in db.visible_tables().columns if c.table == "channels")
        cpu, wall = _cpu_seconds(), time.perf_counter()
        sweep_database(db, sweep, report, profile=profile, policy=policy, columns=columns)
        wall, cpu = time.perf_counter() - wall, _cpu_seconds() - cpu
    return {"seconds": wall, "cpu_seconds": cpu, "bytes": report.bytes_scanned,
            "hits": report.hits_total}


def _raw_dump_child(profile: TargetProfile, policy_path: Path | None = None) -> dict[str, Any]:
    """The sweep's database read (the same parts, threads, sessions and COPY blocks),
    searched for no needle."""
    return _sweep_database_child(profile, [], policy_path)


TOKEN_READ = ("platform", "access_token_enc", "refresh_token_enc")
HASH_READ = ("password_hash",)


def _then_raw(raw_runs: list[dict[str, Any]], measured: dict[str, Any],
              raw: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The check's run, then the bare read's, kept aside (same load, one after the other)."""
    raw_runs.append(raw())
    return measured


def _beside_raw(entry: dict[str, Any], raw_runs: list[dict[str, Any]], rows: int) -> None:
    """Add the bare read's median rate (rows/s) and the check's ratio to it to an entry."""
    rates = [rows / r["seconds"] for r in raw_runs]
    entry["raw_read_median"] = round(statistics.median(rates))
    entry["raw_read_mb_per_s_median"] = round(statistics.median(
        r["bytes"] / MB / r["seconds"] for r in raw_runs), 1)
    entry["over_raw_read"] = round(entry["median"] / entry["raw_read_median"], 3)
    entry["raw_read_runs"] = [{k: round(v, 2) if isinstance(v, float) else v
                               for k, v in r.items()} for r in raw_runs]
    print(f"  raw read of the same rows: {entry['raw_read_median']:,} rows/s; "
          f"check ÷ raw read = {entry['over_raw_read']}", flush=True)


def _in_child(function: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter (its own memory high-water mark), one that
    may start the scans' worker processes (a multiprocessing.Pool's daemonic one may not).

    The child and its workers get a temporary directory of their own (``TMPDIR``), and the
    peaks of all of them are sampled from here (``ProcessTreePeaks``): resident memory of
    every process together, and the temporary disk they held. A temporary file left behind
    after the measurement fails the run."""
    temp = Path(tempfile.mkdtemp(prefix="bench-columns-tmp-"))
    previous = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(temp)  # inherited by the spawned child and its workers
    try:
        with ProcessTreePeaks(temp) as peaks, ProcessPoolExecutor(
                1, mp_context=multiprocessing.get_context("spawn")) as pool:
            measured = pool.submit(function, *args).result()
        left = [str(p.relative_to(temp)) for p in temp.rglob("*")]
        assert not left, f"temporary files left behind by {function.__name__}: {left[:5]}"
    finally:
        if previous is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = previous
        shutil.rmtree(temp, ignore_errors=True)
    return {**measured, **peaks.figures()}


def _server_cpu_seconds(cluster: ScratchPostgres) -> float:
    """CPU seconds the cluster's server has used: the postmaster's children that have ended
    (every backend of a finished measurement: its ``cutime`` and ``cstime``) and those still
    there, from ``/proc`` (clock ticks: 10 ms)."""
    postmaster = int((cluster.root / "data" / "postmaster.pid").read_text().split()[0])
    tick = os.sysconf("SC_CLK_TCK")

    def fields(pid: int | str) -> list[str]:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()

    total = sum(int(f) for f in fields(postmaster)[13:15])
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = fields(pid)
        except OSError:  # Gone meanwhile: counted by its parent's cutime.
            continue
        if stat[1] == str(postmaster):
            total += int(stat[11]) + int(stat[12])
    return total / tick


def _on_server(cluster: ScratchPostgres, function: Callable[..., dict[str, Any]],
               *args: Any) -> dict[str, Any]:
    """``_in_child(function, *args)``, with the server's CPU seconds meanwhile
    (``server_cpu_seconds``: the backends' work, which the client's CPU seconds leave out)."""
    before = _server_cpu_seconds(cluster)
    measured = _in_child(function, *args)
    return {**measured, "server_cpu_seconds": _server_cpu_seconds(cluster) - before}


def repeat(name: str, times: int, run: Callable[[], dict[str, Any]],
           rate: Callable[[dict[str, Any]], float]) -> dict[str, Any]:
    """``times`` runs of ``run``: each with the load around it, and the median rate."""
    runs = []
    for index in range(times):
        load_before = load_average()
        measured = run()
        result = {k: round(v, 2) if isinstance(v, float) else v for k, v in measured.items()}
        # Rates from the times as measured: a tiny run's CPU time rounds to 0.0 s.
        result["rate"] = round(rate(measured))
        # The same work per CPU second of the measured process: what the code costs,
        # whatever else the machine is doing (the database server's CPU is not in it).
        result["rate_per_cpu_second"] = round(rate(dict(measured, seconds=measured["cpu_seconds"])))
        result["load_before"], result["load_after"] = load_before, load_average()
        runs.append(result)
        server = (f", server {result['server_cpu_seconds']} s CPU"
                  if "server_cpu_seconds" in result else "")
        print(f"  {name} run {index + 1}/{times}: {result['rate']:,} "
              f"({result['seconds']} s wall, {result['cpu_seconds']} s CPU{server}, "
              f"load {load_before[0]} -> {result['load_after'][0]})", flush=True)
    rates = [r["rate"] for r in runs]
    return {"median": round(statistics.median(rates)), "min": min(rates), "max": max(rates),
            "median_per_cpu_second": round(statistics.median(r["rate_per_cpu_second"]
                                                             for r in runs)),
            "runs": runs}


# --- the sweep's dump file ----------------------------------------------------------------------


def canaries(count: int) -> KnownSecrets:
    """``count`` canary secrets shaped like the harness's own (password-, token-, e-mail-like)."""
    known = KnownSecrets()
    rng = random.Random(9)
    for i in range(count):
        tail = "".join(rng.choices("abcdefghijklmnopqrstuvwxyz0123456789", k=16))
        value = (f"canary-pw-{tail}-Aa1!" if i % 3 == 0 else
                 f"canary-token-{tail}" if i % 3 == 1 else f"canary+{tail}@audit.invalid")
        known.add(value, f"canary {i}")
    return known


def _dump_block(rng: random.Random, size: int) -> bytes:
    """``size`` bytes of pg_dump-like COPY lines (text a search engine cannot skip trivially)."""
    lines = []
    total = 0
    row = 0
    token_chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    while total < size:
        row += 1
        kind = row % 4
        if kind == 0:
            line = (f"{row}\t1\t{PLATFORMS[row % 5]}\tacct-{row}\tgAAAAA"
                    + "".join(rng.choices(token_chars, k=150)) + "==\t2026-11-30 12:00:00+00\n")
        elif kind == 1:
            line = (f"{row}\tuser{row}@example.com\t" + "$2b$12$"
                    + "".join(rng.choices(BCRYPT_ALPHABET, k=53)) + "\tt\n")
        elif kind == 2:
            line = (f"{row}\t{{\"caption\": \"A post about {rng.choice(PLATFORMS)} and "
                    f"campaign {row}\", \"likes\": {rng.randint(0, 9999)}}}\n")
        else:
            line = f"{row}\t" + os.urandom(24).hex() + "\tcanary-like-but-not-" + str(row) + "\n"
        lines.append(line)
        total += len(line)
    return "".join(lines).encode()[:size]


def write_dump(path: Path, gib: float, known: KnownSecrets) -> list[tuple[bytes, str]]:
    """A dump of ``gib`` GiB with every needle planted once; returns the needles."""
    needles = known.needles()
    rng = random.Random(5)
    block_size = 16 * MIB
    blocks = max(1, round(gib * 1024 * MIB / block_size))
    base = [_dump_block(rng, block_size) for _ in range(4)]
    # Each needle at a random line start of a random block (never across two needles).
    plan: dict[int, list[bytes]] = {}
    for needle, _ in needles:
        plan.setdefault(rng.randrange(blocks), []).append(needle)
    with path.open("wb") as out:
        for index in range(blocks):
            block = base[index % len(base)]
            planted = plan.get(index, [])
            if planted:
                parts, cursor = [], 0
                cuts = sorted(rng.sample(range(1, block_size // 4096), len(planted)))
                for cut, needle in zip(cuts, planted, strict=True):
                    at = block.index(b"\n", cut * 4096) + 1
                    parts += [block[cursor:at], b"99\tnote=" + needle + b"\n"]
                    cursor = at
                parts.append(block[cursor:])
                block = b"".join(parts)
            out.write(block)
    return needles


def bench_sweep_file(path: Path, needles: list[tuple[bytes, str]]) -> dict[str, Any]:
    sweep = SecretSweep(needles)
    cpu, wall = time.process_time(), time.perf_counter()
    report = sweep.sweep_files([path])
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    found = {hit.label for hit in report.hits}
    missing = [label for _, label in needles if label not in found]
    assert not missing and report.hits_total == len(needles), (missing, report.hits_total)
    return {"seconds": wall, "cpu_seconds": cpu, "bytes": report.bytes_scanned,
            "hits": report.hits_total}


def end_to_end_summary(results: dict[str, Any], rows: int, users: int) -> dict[str, Any]:
    """The audit of the table end to end: the three checks' stages (median of their runs),
    their sum, and the peaks over all their processes (memory together, temporary disk)."""
    entries = {"fernet": results.get(f"fernet_validation_{rows}"),
               "bcrypt": (results.get(f"bcrypt_format_{users}") or {}).get("from_postgres"),
               "sweep_database": results.get("sweep_database_channels")}
    stages = {}
    for name, entry in entries.items():
        if entry is None:
            continue
        runs = entry["runs"]
        stages[name] = {
            "seconds": round(statistics.median(r["seconds"] for r in runs), 1),
            "cpu_seconds": round(statistics.median(r["cpu_seconds"] for r in runs), 1),
            **{key: round(max(r[key] for r in runs), 1)
               for key in ("all_processes_rss_peak_mib", "all_processes_hwm_sum_mib",
                           "temp_disk_peak_mib")},
            "load_before": runs[0]["load_before"], "load_after": runs[-1]["load_after"]}
    summary: dict[str, Any] = {"stages": stages, "complete": len(stages) == len(entries)}
    if stages:
        summary["seconds"] = round(sum(s["seconds"] for s in stages.values()), 1)
        summary["cpu_seconds"] = round(sum(s["cpu_seconds"] for s in stages.values()), 1)
        for key in ("all_processes_rss_peak_mib", "all_processes_hwm_sum_mib",
                    "temp_disk_peak_mib"):
            summary[key] = max(s[key] for s in stages.values())
        print(f"end to end ({', '.join(stages)}): {summary['seconds']} s "
              f"({summary['cpu_seconds']} CPU s); all processes together at most "
              f"{summary['all_processes_rss_peak_mib']} MiB resident (sampled), "
              f"temporary disk at most {summary['temp_disk_peak_mib']} MiB", flush=True)
    return summary


@contextmanager
def seeded_cluster(args: argparse.Namespace,
                   results: dict[str, Any]) -> Iterator[tuple[ScratchPostgres, bytes]]:
    """The run's cluster, seeded, and the key of its tokens; ``results["seed"]`` says how.

    Without ``--cluster-dir`` a scratch cluster seeded for this run (only the tables the
    measures need) and removed at the end; with it, the cluster kept there: seeded now
    (every table, whatever ``--skip`` says) if the directory is new or empty, else reused
    if it was seeded with the same ``--rows``, ``--users`` and ``--tokens-by`` (another
    seeding is refused: ``ClusterRefused``)."""
    if args.cluster_dir is None:
        raw_key = os.urandom(32)
        with bench_cluster() as cluster:
            print(f"seeding {args.rows:,} channel rows and {args.users:,} users ...", flush=True)
            need_channels = "fernet" not in args.skip or "sweep-db" not in args.skip
            results["seed"] = seed(cluster, args.rows if need_channels else 0,
                                   args.users if "bcrypt" not in args.skip else 1, raw_key,
                                   args.workers, args.tokens_by)
            print(f"  {results['seed']}", flush=True)
            yield cluster, raw_key
        return
    want = wanted(args.rows, args.users, args.tokens_by)
    with kept_postgres(args.cluster_dir, want, settings=SETTINGS,
                       seeding_settings=SEEDING_SETTINGS) as kept:
        if kept.seeded is None:
            print(f"seeding {args.rows:,} channel rows and {args.users:,} users into "
                  f"{kept.directory} (kept for later runs) ...", flush=True)
            raw_key = os.urandom(32)
            load_before = load_average()
            prepare(kept.cluster)
            figures = seed(kept.cluster, args.rows, args.users, raw_key, args.workers,
                           args.tokens_by)
            os.sync()
            record = seeded_record(want, figures, load_before, load_average())
            write_marker(kept.directory, record, raw_key)
            results["seed"] = {**figures, "reused": False, "cluster_dir": str(kept.directory),
                               "load_before": record["load_before"],
                               "load_after": record["load_after"]}
        else:
            raw_key = read_key(kept.directory)
            record = kept.seeded
            results["seed"] = {**record["seed"], "reused": True,
                               "cluster_dir": str(kept.directory),
                               "seeded_utc": record["seeded_utc"],
                               "load_before": record["load_before"],
                               "load_after": record["load_after"]}
            print(f"reusing the cluster kept in {kept.directory}, seeded {record['seeded_utc']} "
                  f"in {record['seed']['seed_seconds']} s (not seeded again)", flush=True)
        print(f"  {results['seed']}", flush=True)
        yield kept.cluster, raw_key


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="channel rows (10M: --rows 10000000)")
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--sweep-gib", type=float, default=1.0)
    parser.add_argument("--canaries", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="seeding processes")
    parser.add_argument("--tokens-by", choices=["fieldcipher", "pgcrypto"], default="fieldcipher",
                        help="who makes the seeded tokens: the reference service's FieldCipher, "
                             "or the server (pgcrypto; minutes faster for 10M+ rows)")
    parser.add_argument("--jobs", type=int, default=None,
                        help="the scans' worker processes (default: the policy's, all cores)")
    parser.add_argument("--skip", action="append", default=[],
                        choices=["fernet", "bcrypt", "bcrypt-in-memory", "sweep", "sweep-db"])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "columns.json")
    parser.add_argument("--policy", type=Path, default=None,
                        help="the audit's policy file (default: fixtures/policy/default.toml), "
                             "e.g. a longer [timeouts] command_s for tens of millions of rows")
    parser.add_argument("--cluster-dir", type=Path, default=None,
                        help="keep the seeded cluster in this directory: seeded if it is new or "
                             "empty, reused by a later run with the same --rows, --users and "
                             "--tokens-by (removed by hand: rm -r DIR)")
    args = parser.parse_args()

    versions = {name: metadata.version(name) for name in ("psycopg", "cryptography",
                                                          "ahocorasick-rs")}
    results: dict[str, Any] = {
        "python": sys.version.split()[0], "machine": platform.machine(), "cpus": os.cpu_count(),
        "cpu_model": cpu_model(), "packages": versions, "repeats": args.repeats,
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "policy": str(args.policy or "default"),
        "load_at_start": load_average()}
    known = canaries(args.canaries)
    try:
        _policy(args.jobs, args.policy)
    except PolicyError as refused:
        print(f"bench_columns: {refused}", file=sys.stderr)
        return 2
    with ExitStack() as stack:
        try:
            cluster, raw_key = stack.enter_context(seeded_cluster(args, results))
        except ClusterRefused as refused:
            print(f"bench_columns: {refused}", file=sys.stderr)
            return 2
        profile = cluster.profile("bench")
        jobs, policy_path = args.jobs, args.policy
        if "fernet" not in args.skip:
            # The check and the bare read of the same rows alternate, so that both see the
            # same load; the ratio of their medians is the figure to compare run to run.
            raw_runs: list[dict[str, Any]] = []
            fernet = repeat("fernet validation (channel rows/s)", args.repeats,
                            lambda: _then_raw(raw_runs, _in_child(_observe_tokens_child, profile,
                                                                  raw_key, jobs, policy_path),
                                              lambda: _in_child(_raw_read_child, profile,
                                                                "channels", TOKEN_READ, jobs,
                                                                policy_path)),
                            lambda r: args.rows / r["seconds"])
            for run in fernet["runs"]:
                assert run["outcome"] == "PASS" and run["valid"] == run["cells"] == 2 * args.rows, run
            assert all(r["rows"] == args.rows for r in raw_runs), raw_runs
            _beside_raw(fernet, raw_runs, args.rows)
            fernet["cells_per_s_median"] = 2 * fernet["median"]
            fernet["rss_peak_mib_max"] = max(r["rss_peak_mib"] for r in fernet["runs"])
            fernet["rss_total_peak_mib_at_most"] = max(r["rss_total_peak_mib_at_most"]
                                                       for r in fernet["runs"])
            fernet["target"] = ("≥ 300,000 rows/s on 2 cores and ≥ 0.5x the raw read; "
                                "≤ 300 MB peak at 10M rows")
            results[f"fernet_validation_{args.rows}"] = fernet
        if "bcrypt" not in args.skip:
            raw_users: list[dict[str, Any]] = []
            end_to_end = repeat("bcrypt format from PostgreSQL (rows/s)", args.repeats,
                                lambda: _then_raw(raw_users, _on_server(
                                    cluster, _observe_passwords_child, profile, jobs, policy_path),
                                                  lambda: _on_server(
                                    cluster, _raw_read_child, profile, "users", HASH_READ, jobs,
                                    policy_path)),
                                lambda r: r["rows"] / r["seconds"])
            _beside_raw(end_to_end, raw_users, args.users)
            # Every row held at once: --skip bcrypt-in-memory for tens of millions of users.
            in_memory = repeat("bcrypt format in memory (rows/s)", args.repeats,
                               lambda: _in_child(_classify_in_memory_child, cluster.dsn()),
                               lambda r: r["rows"] / r["seconds"]) \
                if "bcrypt-in-memory" not in args.skip else None
            results[f"bcrypt_format_{args.users}"] = {
                "from_postgres": end_to_end, "in_memory": in_memory,
                "target": "≥ 2,000,000 rows/s from PostgreSQL"}
        if "sweep-db" not in args.skip:
            raw_dumps: list[dict[str, Any]] = []
            swept = repeat("sweep of the channels table through COPY (MB/s)", args.repeats,
                           lambda: _then_raw(raw_dumps, _on_server(
                               cluster, _sweep_database_child, profile, known.needles(),
                               policy_path), lambda: _on_server(cluster, _raw_dump_child, profile,
                                                                policy_path)),
                           lambda r: r["bytes"] / MB / r["seconds"])
            swept["raw_read_median"] = round(statistics.median(
                r["bytes"] / MB / r["seconds"] for r in raw_dumps), 1)
            swept["over_raw_read"] = round(swept["median"] / swept["raw_read_median"], 3)
            swept["raw_read_runs"] = raw_dumps
            swept["target"] = "≥ 200 MB/s"
            results["sweep_database_channels"] = swept
        results["end_to_end"] = end_to_end_summary(results, args.rows, args.users)
    if "sweep" not in args.skip:
        dump_dir = Path(tempfile.mkdtemp(prefix="bench-dump-", dir="/tmp"))
        try:
            dump = dump_dir / "dump.sql"
            print(f"writing a {args.sweep_gib:g} GiB dump ...", flush=True)
            needles = write_dump(dump, args.sweep_gib, known)
            sweep = repeat("sweep of the dump file (MB/s)", args.repeats,
                           lambda: bench_sweep_file(dump, needles),
                           lambda r: r["bytes"] / MB / r["seconds"])
            sweep.update({"dump_bytes": dump.stat().st_size, "canaries": args.canaries,
                          "needles": len(needles), "target": "≥ 300 MB/s over ≥ 1 GB"})
            results["sweep_file"] = sweep
        finally:
            shutil.rmtree(dump_dir, ignore_errors=True)
    results["load_at_end"] = load_average()
    text = json.dumps(results, indent=2, ensure_ascii=False)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n", encoding="utf-8")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
