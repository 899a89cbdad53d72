"""Benchmark the at-rest column checks: Fernet validation, bcrypt-format classification, sweep.

    python bench/bench_columns.py [--rows 1000000] [--sweep-mib 256] [--out bench/results/columns.json]

Starts a scratch PostgreSQL 15 cluster (initdb under a temporary directory,
run as ``nobody`` when invoked as root), seeds one table with ``--rows``
Fernet tokens made by ``cryptography.fernet.Fernet`` (the library the
reference service encrypts with), in a child process so that seeding does
not count towards the measured memory, then times the same code path as
``at_rest.tokens_fernet``: a server-side cursor streaming batches into
``scan_fernet_cells`` with IV/ciphertext duplicate counting. Peak memory is
the process's resident high-water mark (``ru_maxrss``) over the scan, and
the Python heap peak measured separately with tracemalloc on a 100k-row run.

Also: ``classify_stored_hash`` over bcrypt-shaped strings (rows/s), and
``SecretSweep`` over pseudo-random bytes with 300 secrets in 5 encodings (MB/s).
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import psycopg
from cryptography.fernet import Fernet

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from checks.at_rest import DuplicateCounter, scan_fernet_cells, scan_hash_cells
from harness.formats.fernet import FernetKey
from harness.redaction import KnownSecrets
from harness.sweep import SecretSweep, SweepReport
from system_under_test.local.processes import find_binary, free_port, service_user

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _as_service_user(argv: list[str]) -> list[str]:
    """Run as the reference stack's service user (``nobody`` when we are root), as its servers do."""
    return service_user().argv(argv, find_binary("setpriv"))


class ScratchCluster:
    """A throwaway PostgreSQL 15 cluster (trust auth on a unix socket in its own directory)."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="bench-pg-", dir="/tmp"))
        self.port = free_port()
        service_user().chown(self.root)

    def dsn(self) -> str:
        return f"host={self.root} port={self.port} dbname=postgres user=postgres"

    def __enter__(self) -> ScratchCluster:
        data = self.root / "data"
        subprocess.run(_as_service_user([str(PG_BIN / "initdb"), "-D", str(data), "-U",
                                         "postgres", "--auth=trust"]),
                       check=True, capture_output=True, timeout=120)
        subprocess.run(_as_service_user([
            str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(self.root / "pg.log"), "-w",
            "start", "-o", f"-p {self.port} -k {self.root} -c listen_addresses=''"]),
            check=True, capture_output=True, timeout=120)
        return self

    def __exit__(self, *exc: object) -> None:
        subprocess.run(_as_service_user([str(PG_BIN / "pg_ctl"), "-D", str(self.root / "data"),
                                         "-m", "fast", "-w", "stop"]),
                       capture_output=True, timeout=120)
        shutil.rmtree(self.root, ignore_errors=True)


def seed(dsn: str, rows: int, key_text: bytes) -> float:
    """Fill ``bench_channels`` with ``rows`` Fernet tokens (run in a child process)."""
    fernet = Fernet(key_text)
    started = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_channels")
        conn.execute("CREATE TABLE bench_channels (id bigserial PRIMARY KEY, "
                     "access_token_enc text NOT NULL)")
        with conn.cursor() as cur, cur.copy(
                "COPY bench_channels (access_token_enc) FROM STDIN") as copy:
            for i in range(rows):
                token = fernet.encrypt(f"oauth-access-token-{i:09d}-{'x' * 40}".encode())
                copy.write_row((token.decode("ascii"),))
        conn.execute("VACUUM ANALYZE bench_channels")
    return time.perf_counter() - started


def _stream(dsn: str, batch: int) -> object:
    conn = psycopg.connect(dsn)
    with conn.cursor(name="bench") as cursor:
        cursor.itersize = batch
        cursor.execute("SELECT id, access_token_enc FROM bench_channels")
        while rows := cursor.fetchmany(batch):
            yield from rows
    conn.close()


def bench_fernet(dsn: str, key: FernetKey, batch: int) -> dict[str, float]:
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    duplicates = DuplicateCounter()
    started = time.perf_counter()
    scan = scan_fernet_cells(_stream(dsn, batch), "bench_channels.access_token_enc",  # type: ignore[arg-type]
                             [key], now=time.time(), max_clock_skew_s=300, duplicates=duplicates)
    shared = duplicates.result()
    seconds = time.perf_counter() - started
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert scan.valid == scan.rows and shared == (0, 0, 0), (scan.failures, shared)
    return {"rows": scan.rows, "seconds": round(seconds, 2),
            "rows_per_s": round(scan.rows / seconds), "batch_rows": batch,
            "rss_before_mib": round(rss_before / 1024, 1),
            "rss_peak_mib": round(rss_after / 1024, 1),
            "rss_growth_mib": round((rss_after - rss_before) / 1024, 1)}


def bench_fernet_heap(dsn: str, key: FernetKey, batch: int, rows: int) -> dict[str, float]:
    tracemalloc.start()
    scan = scan_fernet_cells(itertools.islice(_stream(dsn, batch), rows),  # type: ignore[call-overload]
                             "t.c", [key], now=time.time(), max_clock_skew_s=300,
                             duplicates=DuplicateCounter())
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"rows": scan.rows, "python_heap_peak_mib": round(peak / 2**20, 2)}


def bench_bcrypt_format(rows: int) -> dict[str, float]:
    alphabet = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    rng = random.Random(1)
    values = ["$2b$12$" + "".join(rng.choice(alphabet) for _ in range(53)) for _ in range(10000)]
    cells = ((i, values[i % len(values)]) for i in range(rows))
    started = time.perf_counter()
    scan = scan_hash_cells(cells, "users.password_hash", 12)
    seconds = time.perf_counter() - started
    assert scan.schemes == {"bcrypt": rows}
    return {"rows": rows, "seconds": round(seconds, 2), "rows_per_s": round(rows / seconds)}


def bench_sweep(mib: int) -> dict[str, float]:
    known = KnownSecrets()
    for i in range(300):
        known.add(f"canary-secret-{i:04d}-{os.urandom(8).hex()}", f"secret {i}")
    sweep = SecretSweep.from_known(known)
    block = os.urandom(1 << 20)
    # Printable data too: logs are text, where needle prefixes match more often.
    text_block = bytes(b % 64 + 48 for b in block)
    chunks = [block if i % 2 else text_block for i in range(mib)]
    report = SweepReport()
    started = time.perf_counter()
    sweep.sweep([("blob", chunks)], report)
    seconds = time.perf_counter() - started
    return {"mib": mib, "needles": sweep.needle_count, "seconds": round(seconds, 2),
            "mib_per_s": round(mib / seconds, 1), "hits": report.hits_total}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--sweep-mib", type=int, default=256)
    parser.add_argument("--out", type=Path, default=Path("bench/results/columns.json"))
    args = parser.parse_args()
    key_text = Fernet.generate_key()
    key = FernetKey.from_text(key_text, "bench")
    results: dict[str, object] = {"python": sys.version.split()[0], "cpus": os.cpu_count()}
    with ScratchCluster() as cluster:
        child = multiprocessing.get_context("spawn").Pool(1)
        results["seed_seconds"] = round(child.apply(seed, (cluster.dsn(), args.rows, key_text)),
                                        1)
        child.close()
        child.join()
        results["fernet_validation"] = bench_fernet(cluster.dsn(), key, args.batch)
        results["fernet_heap"] = bench_fernet_heap(cluster.dsn(), key, args.batch, 100_000)
    results["bcrypt_format"] = bench_bcrypt_format(args.rows)
    results["sweep"] = bench_sweep(args.sweep_mib)
    text = json.dumps(results, indent=2)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
