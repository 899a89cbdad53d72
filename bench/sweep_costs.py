"""Where the database sweep's time goes, in load-independent terms (CPU seconds), on the
cluster ``bench_columns.py --cluster-dir`` keeps (issue #20: the sweep ≥ 200 MB/s).

    python bench/sweep_costs.py --cluster-dir /work/h2-cluster --rows 1000000 --users 10000

For ``channels`` as the sweep reads it (every column, ``COPY`` text), each run measures:
the server backend's CPU seconds producing the ``COPY`` output, text and binary (from
``/proc/<backend pid>/stat``: the server runs on this machine), and the client's for
draining it (``pg_reads.copy_blocks``); the automaton alone over the text blocks, with the
benchmark's 50 canaries (233 needles), per CPU second; and ``sweep_database`` end to end
in one read (``--jobs 1``) and in key ranges on the policy's workers, wall and client CPU.
Figures are printed and written to ``--out`` as JSON, with the load before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_columns import SETTINGS, canaries  # noqa: E402
from bench.kept_cluster import ClusterRefused, kept_postgres, read_marker, wanted  # noqa: E402
from bench.machine import cpu_model, load_average  # noqa: E402
from harness.policy import load_policy  # noqa: E402
from harness.probes.database import DatabaseProbe  # noqa: E402
from harness.probes.database_sweep import sweep_database  # noqa: E402
from harness.probes.pg_reads import copy_blocks  # noqa: E402
from harness.sweep import SecretSweep, SweepReport  # noqa: E402

MB = 1_000_000
#: Text blocks held in memory for the automaton's own measure (the first ones, at most).
HELD_BYTES = 512 * MB


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _backend_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def drain(dsn: str, form: str, held: list[bytes] | None = None) -> dict[str, float]:
    """``COPY`` of every column of channels in ``form`` (``text`` or ``binary``) drained on one
    connection: bytes, wall, and the CPU seconds of this client and of the server's backend."""
    with psycopg.connect(dsn) as conn, conn.cursor() as cursor:
        pid, size = conn.info.backend_pid, 0
        server, client, wall = _backend_cpu(pid), _own_cpu(), time.perf_counter()
        query = f"COPY (SELECT * FROM channels) TO STDOUT (FORMAT {form})"
        for block in copy_blocks(cursor, query, 1 << 20):
            size += len(block)
            if held is not None and sum(map(len, held)) < HELD_BYTES:
                held.append(block)
        return {"bytes": size, "seconds": time.perf_counter() - wall,
                "client_cpu_seconds": _own_cpu() - client,
                "server_cpu_seconds": _backend_cpu(pid) - server}


def automaton(sweep: SecretSweep, held: list[bytes]) -> dict[str, float]:
    """The search alone over blocks already in memory: CPU seconds and MB per CPU second."""
    cpu = _own_cpu()
    hits = sum(1 for block in held for _ in sweep.scan_copy_rows(block, [None] * 64))
    cpu = _own_cpu() - cpu
    size = sum(map(len, held))
    return {"bytes": size, "cpu_seconds": cpu, "mb_per_cpu_second": size / MB / cpu, "hits": hits}


def swept(profile: Any, sweep: SecretSweep, jobs: int | None) -> dict[str, float]:
    """``sweep_database`` over channels as the check runs it (``jobs`` None: the policy's)."""
    policy = load_policy() if jobs is None else load_policy().with_scan(jobs=jobs)
    with DatabaseProbe(profile, policy) as db:
        columns = tuple(c for c in db.visible_tables().columns if c.table == "channels")
        cpu, wall = _own_cpu(), time.perf_counter()
        report = sweep_database(db, sweep, SweepReport(), profile=profile, policy=policy,
                                columns=columns)
        wall, cpu = time.perf_counter() - wall, _own_cpu() - cpu
    return {"bytes": report.bytes_scanned, "seconds": wall, "client_cpu_seconds": cpu,
            "mb_per_s": report.bytes_scanned / MB / wall, "hits": report.hits_total}


def _runs(times: int, measure: Callable[[], dict[str, float]]) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    for _ in range(times):
        before = load_average()
        runs.append({**{k: round(v, 3) for k, v in measure().items()},
                     "load_before": before, "load_after": load_average()})
    medians = {f"{k}_median": round(statistics.median(float(r[k]) for r in runs), 3)
               for k in runs[0] if not k.startswith("load")}
    return {**medians, "runs": runs}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cluster-dir", type=Path, required=True)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--tokens-by", choices=["fieldcipher", "pgcrypto"], default="pgcrypto")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "sweep_costs.json")
    args = parser.parse_args()
    results: dict[str, Any] = {"cpu_model": cpu_model(), "cpus": os.cpu_count(),
                               "rows": args.rows, "load_at_start": load_average()}
    sweep = SecretSweep(canaries(50).needles())
    want = wanted(args.rows, args.users, args.tokens_by)
    try:
        # Checked before anything starts: an empty directory would be given a new cluster.
        if read_marker(args.cluster_dir, want) is None:
            raise ClusterRefused(f"--cluster-dir {args.cluster_dir} holds no seeded cluster: "
                                 "seed it with bench_columns.py --cluster-dir first")
        with kept_postgres(args.cluster_dir, want, settings=SETTINGS) as kept:
            dsn, profile = kept.cluster.dsn(), kept.cluster.profile("bench")
            held: list[bytes] = []
            results["copy_text"] = _runs(args.repeats, lambda: drain(dsn, "text"))
            results["copy_binary"] = _runs(args.repeats, lambda: drain(dsn, "binary"))
            drain(dsn, "text", held)
            results["automaton"] = _runs(args.repeats, lambda: automaton(sweep, held))
            held.clear()
            results["sweep_one_read"] = _runs(args.repeats, lambda: swept(profile, sweep, 1))
            results["sweep_parts"] = _runs(args.repeats, lambda: swept(profile, sweep, None))
    except ClusterRefused as refused:
        print(f"sweep_costs: {refused}", file=sys.stderr)
        return 2
    results["load_at_end"] = load_average()
    text = json.dumps(results, indent=2)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
