"""Rotation under load: re-encryption rows/s of a live token-key rotation, and latency during it.

    ./dev -- python bench/bench_rotation.py                    # 1,000,000 bulk channel rows
    ./dev -- python bench/bench_rotation.py --rows 100000 --out bench/results/rotation-100k.json

Issue #9's target: zero failed requests, and p99 latency during the rotation
at most 3 times the p99 before it.

What runs, in order (only the rotation and the load around it are measured):

1. The reference service, local backend (``system_under_test.local.stack.up``)
   in a fresh directory under /tmp, torn down at the end whatever happens.
2. Seeding (not timed): ``--rows`` channel rows written straight into
   PostgreSQL by the service's own bulk seeder (``ops.seeding.seed_channels``:
   COPY, tokens encrypted by its ``FieldCipher`` under the HSM's key), in
   ``--workers`` processes; then ``VACUUM ANALYZE channels``.
3. The load exactly as ``keys.token_key_rotation`` drives it (the check's own
   canary account, its ``policy.rotation.seed_channels`` channels made through
   the API, and its load call: ``POST /channels/{id}/sync``, which decrypts,
   alternating with ``PUT /channels/{id}/tokens``, which encrypts, from
   ``policy.rotation.load_concurrency`` threads through the TLS edge, timed by
   ``harness.load.SteadyLoad``). ``--baseline-s`` of load alone, then the
   profile's ``operations.rotate_token_key`` command, run as the check runs it
   (``run_operation``), while the load goes on; ``--tail-s`` after it.
4. Afterwards every Fernet column the rotation rewrites (channels, users,
   captions) is read back and each value decrypted with the new key alone
   (all rows by default; ``--verify-sample N`` for a random sample of N
   channel rows), and the canary channels' tokens are compared with what the
   load last wrote.

Reported: rotation wall time (the command, from start to exit) and its
phases (stage, promote, rewrite, retire, from ``STATE/logs/ops.log``), rows
re-encrypted per second (channel rows over the command's wall time, and all
rewritten rows over the rewrite phase), requests before/during/after, failed
requests, p50/p99 before and during and their ratios (also per phase), and
the CPU each part used during each window, in cores (PostgreSQL, the API's
workers, nginx, the fakes, Redis, the ops command, this process's load
generator, and everything else on the machine), and how much of the time its
threads were runnable but waiting for a CPU (``/proc/PID/task/*/schedstat``),
sampled every 0.5 s. The machine is shared (2 cores): the load average is
recorded at each step, and the ops command's CPU seconds per row give the
rate it would reach with a core to itself (``rows_per_ops_cpu_s``).
Everything is printed and written to ``--out`` as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import platform
import random
import re
import resource
import shutil
import sys
import tempfile
import threading
import time
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cryptography.fernet import Fernet, InvalidToken  # noqa: E402

from bench.machine import cpu_model, load_average  # noqa: E402
from harness.commands import run_operation  # noqa: E402
from harness.load import LoadReport, SteadyLoad, WindowStats  # noqa: E402
from harness.policy import load_policy  # noqa: E402
from harness.probes.channel_load import RotationCanary, load_call, seed_channels  # noqa: E402
from harness.profile import load_profile  # noqa: E402
from harness.redaction import KnownSecrets  # noqa: E402
from system_under_test.api.keyring import KeyringError, fernet_key, token_key_versions  # noqa: E402
from system_under_test.ops import rotation as ops_rotation  # noqa: E402
from system_under_test.ops import seeding  # noqa: E402
from system_under_test.ops.context import OpsContext  # noqa: E402
from system_under_test.ops.workers import process_stat_fields  # noqa: E402

RESULTS = ROOT / "bench" / "results"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SAMPLE_S = 0.5
P99_RATIO_TARGET = 3.0


def _utc() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# --- seeding (child processes) ------------------------------------------------------------------


def _seed_part(state_dir: str, count: int) -> dict[str, object]:
    """``count`` bulk channel rows by the service's own seeder (one COPY, one transaction).

    SoftHSM sometimes fails to open the token (``GeneralError``) when several
    processes open it at the same moment; the seeder reads the key ring before
    it writes anything, so trying again is safe.
    """
    for attempt in range(5):
        try:
            return seeding.seed_channels(OpsContext.open(state_dir), count)
        except KeyringError:
            if attempt == 4:
                raise
            time.sleep(0.5 + random.random())
    raise AssertionError("unreachable")


def seed_bulk(state_dir: Path, rows: int, workers: int) -> dict[str, Any]:
    """``rows`` channel rows under the bulk brand, in ``workers`` processes; VACUUM ANALYZE."""
    started = time.perf_counter()
    ctx = OpsContext.open(state_dir)
    # The first call creates the bulk user and brand; the parallel ones then find them.
    first = seeding.seed_channels(ctx, 1)
    chunks = max(1, workers * 4)
    step = -(-(rows - 1) // chunks) if rows > 1 else 0
    sizes = [min(step, rows - 1 - s) for s in range(0, rows - 1, step)] if step else []
    done = 1
    if sizes:
        pool = multiprocessing.get_context("spawn").Pool(workers)
        try:
            for result in pool.imap_unordered(_seed_star, [(str(state_dir), n) for n in sizes]):
                done += int(result["count"])  # type: ignore[call-overload]
                print(f"  seeded {done:,}/{rows:,} rows", flush=True)
        finally:
            pool.close()
            pool.join()
    with ctx.connect() as conn:
        conn.execute("VACUUM ANALYZE channels")
        total = conn.execute("SELECT count(*) FROM channels").fetchone()[0]
        size = conn.execute("SELECT pg_total_relation_size('channels')").fetchone()[0]
    return {"bulk_rows": done, "bulk_brand_id": first["brand_id"], "channel_rows_total": total,
            "channels_table_mib": round(size / (1 << 20)), "workers": workers,
            "seconds": round(time.perf_counter() - started, 1)}


def _seed_star(args: tuple[str, int]) -> dict[str, object]:
    return _seed_part(*args)


# --- CPU per part of the stack, sampled from /proc ----------------------------------------------


def _proc_table() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, user+system clock ticks) of every process now."""
    return {pid: (int(fields[1]), int(fields[11]) + int(fields[12])) for pid, fields in process_stat_fields()}


def _runqueue_wait_ns(pid: int) -> int:
    """Nanoseconds the threads of ``pid`` have spent runnable but waiting for a CPU."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat", encoding="ascii") as handle:
                total += int(handle.read().split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return total


def _machine_busy_ticks() -> int:
    with open("/proc/stat", encoding="ascii") as handle:
        fields = [int(x) for x in handle.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal: busy is all but idle and iowait.
    return sum(fields[:8]) - fields[3] - fields[4]


class CpuSampler:
    """Every ``SAMPLE_S``, the CPU ticks of every process, attributed to a part of the stack.

    A process belongs to the part of the first of its ancestors (itself
    included) that is a known root: the PostgreSQL postmaster, the gunicorn
    master (the API's workers), nginx, the fakes, Redis; a child of this
    process that is none of those is the ops command; this process is the
    load generator; everything else is ``other`` (the shared machine).
    """

    def __init__(self, roots: dict[int, str], pid_files: dict[str, Path]) -> None:
        self._roots = dict(roots)
        self._pid_files = pid_files
        self._me = os.getpid()
        self.samples: list[tuple[float, int, dict[int, tuple[str, int, int]]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="cpu-sampler")

    def _current_roots(self) -> dict[int, str]:
        roots = dict(self._roots)
        for name, path in self._pid_files.items():
            with contextlib.suppress(OSError, ValueError):
                roots[int(path.read_text(encoding="ascii").strip())] = name
        return roots

    def sample(self) -> None:
        roots = self._current_roots()
        table = _proc_table()
        owned: dict[int, tuple[str, int, int]] = {}
        for pid, (_, ticks) in table.items():
            part, cursor, seen = "other", pid, 0
            while cursor in table and seen < 64:
                if cursor in roots:
                    part = roots[cursor]
                    break
                if cursor == self._me:
                    part = "bench (load generator)" if pid == self._me else "ops command"
                    break
                cursor, seen = table[cursor][0], seen + 1
            owned[pid] = (part, ticks, _runqueue_wait_ns(pid) if part != "other" else 0)
        self.samples.append((time.monotonic(), _machine_busy_ticks(), owned))

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            self.sample()

    def start(self) -> None:
        self.sample()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sample()

    def cores(self, start: float, end: float) -> dict[str, dict[str, float]]:
        """Between two ``time.monotonic()`` moments, per part: the cores it used (``on_cpu``,
        with the whole machine's busy cores) and how many of its threads were on average
        runnable but waiting for a CPU (``waiting_for_cpu``: the contention it met).
        """
        inside = [s for s in self.samples if s[0] <= start]
        first = inside[-1] if inside else self.samples[0]
        chosen = [s for s in self.samples if first[0] < s[0] <= end]
        if not chosen:
            return {}
        last_seen: dict[int, tuple[str, int, int]] = {}
        for _, _, owned in chosen:
            last_seen.update(owned)
        seconds = chosen[-1][0] - first[0]
        used: dict[str, float] = {}
        waited: dict[str, float] = {}
        for pid, (part, ticks, wait_ns) in last_seen.items():
            _, ticks_before, wait_before = first[2].get(pid, (part, 0, 0))
            used[part] = used.get(part, 0.0) + max(0, ticks - ticks_before) / CLOCK_TICKS
            if part != "other":
                waited[part] = waited.get(part, 0.0) + max(0, wait_ns - wait_before) / 1e9
        on_cpu = {part: round(cpu / seconds, 2)
                  for part, cpu in sorted(used.items(), key=lambda kv: -kv[1]) if cpu}
        on_cpu["machine (all cores busy)"] = round(
            (chosen[-1][1] - first[1]) / CLOCK_TICKS / seconds, 2)
        return {"on_cpu": on_cpu,
                "waiting_for_cpu": {part: round(wait / seconds, 2) for part, wait in
                                    sorted(waited.items(), key=lambda kv: -kv[1])}}


# --- the rotation's phases, from ops.log ----------------------------------------------------------


def rotation_phases(state_dir: Path, since_wall: float) -> list[dict[str, Any]]:
    """The ``rotate-token-key`` progress entries written to ``STATE/logs/ops.log`` after ``since_wall``."""
    phases = []
    try:
        lines = (state_dir / "logs" / "ops.log").read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        progress = entry.get("progress")
        if entry.get("command") != "rotate-token-key" or not isinstance(progress, dict):
            continue
        started = datetime.fromisoformat(progress["started"]).timestamp()
        if started >= since_wall - 1:
            phases.append({**progress, "started_wall": started,
                           "finished_wall": datetime.fromisoformat(progress["finished"]).timestamp()})
    return phases


def _window(load: LoadReport, start: float, end: float) -> dict[str, Any]:
    stats: WindowStats = load.window(start, end)
    seconds = max(end - start, 1e-9)
    return {**stats.as_evidence(), "seconds": round(seconds, 2),
            "requests_per_s": round(stats.requests / seconds, 1)}


def _ratio(during: float | None, before: float | None) -> float | None:
    return round(during / before, 2) if during and before else None


# --- reading everything back --------------------------------------------------------------------


def verify_rows(ctx: OpsContext, new_key: bytes, sample: int | None) -> dict[str, Any]:
    """Decrypt every Fernet column the rotation rewrites with the new key alone."""
    fernet = Fernet(fernet_key(new_key))
    started = time.perf_counter()
    checked: dict[str, dict[str, int]] = {}
    with ctx.connect(autocommit=False) as conn:
        for table, columns in ops_rotation.FERNET_COLUMNS.items():
            query = f"SELECT id, {', '.join(columns)} FROM {table}"  # names from the ops' own map
            if table == "channels" and sample is not None:
                query += " WHERE id = ANY(%s)"
                top = conn.execute("SELECT coalesce(max(id), 0) FROM channels").fetchone()[0]
                params: tuple[Any, ...] = (random.Random(9).sample(range(1, top + 1),
                                                                   min(sample, top)),)
            else:
                params = ()
            counts = {"rows": 0, "values": 0, "unreadable": 0}
            with conn.cursor(name=f"verify_{table}") as cur:
                cur.itersize = 20_000
                cur.execute(query, params)
                for _, *values in cur:
                    counts["rows"] += 1
                    for value in values:
                        if value is None:
                            continue
                        counts["values"] += 1
                        try:
                            fernet.decrypt(value.encode("ascii"))
                        except (InvalidToken, UnicodeError):
                            counts["unreadable"] += 1
            checked[table] = counts
        conn.rollback()
    return {"mode": "full" if sample is None else f"random sample of {sample} channel rows",
            "tables": checked, "unreadable": sum(c["unreadable"] for c in checked.values()),
            "seconds": round(time.perf_counter() - started, 1)}


def canary_tokens_match(ctx: OpsContext, new_key: bytes, expected: dict[int, tuple[str, str]],
                        uncertain: set[int]) -> dict[str, int]:
    """The canary channels' tokens, decrypted under the new key, against what the load last wrote."""
    fernet = Fernet(fernet_key(new_key))
    ids = sorted(set(expected) - uncertain)
    with ctx.connect() as conn:
        rows = {r[0]: (r[1], r[2]) for r in conn.execute(
            "SELECT id, access_token_enc, refresh_token_enc FROM channels WHERE id = ANY(%s)",
            (ids,)).fetchall()}
    mismatches = 0
    for channel in ids:
        stored = rows.get(channel)
        try:
            ok = stored is not None and all(
                fernet.decrypt(enc.encode()).decode() == want
                for enc, want in zip(stored, expected[channel], strict=True))
        except InvalidToken:
            ok = False
        mismatches += 0 if ok else 1
    return {"checked": len(ids), "mismatches": mismatches, "uncertain": len(uncertain)}


FAILURE_LINE = re.compile(r'(?i)error|traceback|timeout|reset|refused|" 50[0-9] |"status": 5[0-9][0-9]')


def failure_logs(state_dir: Path, keep_to: Path | None) -> dict[str, Any]:
    """Every line of the stack's logs that speaks of a failure (an error, a reset, a timeout,
    a 5xx status), by file, the first 15 of each; the logs are copied to ``keep_to``.
    """
    logs = state_dir / "logs"
    found: dict[str, Any] = {}
    for path in sorted(logs.glob("*.log")):
        try:
            lines = [line for line in path.read_text(errors="replace").splitlines()
                     if FAILURE_LINE.search(line)]
        except OSError:
            continue
        if lines:
            found[path.name] = {"lines": len(lines), "first": [line[:400] for line in lines[:15]]}
    if keep_to is not None:
        shutil.copytree(logs, keep_to, dirs_exist_ok=True)
        found["copied_to"] = str(keep_to)
    return found


# --- the run --------------------------------------------------------------------------------------


def run(state_dir: Path, args: argparse.Namespace, results: dict[str, Any]) -> None:
    from system_under_test.local import stack

    print(f"standing up the reference service (local) in {state_dir} ...", flush=True)
    info = stack.up(state_dir)
    results["stack_up_s"] = info.started_in_s
    profile = load_profile(info.profile_path)
    policy = load_policy()
    assert profile.operations.rotate_token_key, "the local profile names no rotate_token_key"
    ctx = OpsContext.open(state_dir)

    print(f"seeding {args.rows:,} channel rows (not timed) ...", flush=True)
    results["load_before_seed"] = load_average()
    results["seed"] = seed_bulk(state_dir, args.rows, args.workers)
    print(f"  {results['seed']}", flush=True)

    versions_before = token_key_versions(ctx.secrets())
    known = KnownSecrets()
    canary = RotationCanary(profile, policy, known)
    sampler = CpuSampler({info.pids["postgres"]: "postgres", info.pids["nginx"]: "nginx",
                          info.pids["fakes"]: "fakes", info.pids["redis"]: "redis"},
                         {"api (gunicorn)": info.pid_files["api"]})
    try:
        seeded = seed_channels(canary, policy.rotation.seed_channels)
        channel_ids = sorted(seeded)
        expected = dict(seeded)
        uncertain: set[int] = set()
        writes: list[tuple[float, int]] = []
        concurrency = policy.rotation.load_concurrency
        holder: list[SteadyLoad] = []
        call = load_call(canary, channel_ids, expected, uncertain, writes,
                         lambda: holder[0].elapsed(), concurrency)
        load = SteadyLoad(call, concurrency, stop_timeout_s=policy.timeouts.request_s + 5)
        holder.append(load)
        results["canary_channels"] = len(channel_ids)
        results["load_concurrency"] = concurrency

        sampler.start()
        load.start()
        # Both clocks are monotonic; this maps the load's seconds to the wall clock of ops.log.
        t0_mono = time.monotonic() - load.elapsed()
        t0_wall = time.time() - load.elapsed()
        print(f"baseline: {args.baseline_s:g} s of load alone ...", flush=True)
        try:
            time.sleep(args.baseline_s)
            results["load_at_rotation_start"] = load_average()
            load.mark("rotation started")
            rotation_started_wall = time.time()
            children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
            print(f"rotating: {' '.join(profile.operations.rotate_token_key)}", flush=True)
            command = run_operation(profile.operations.rotate_token_key, args.timeout_s,
                                    on_line=lambda line: load.mark(f"output: {line[:120]}"))
            children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
            load.mark("rotation finished")
            results["load_at_rotation_end"] = load_average()
            time.sleep(args.tail_s)
        finally:
            report = load.stop()
            sampler.stop()
        # Read back before the canary account goes (its channels go with it).
        print("reading every rewritten value back under the new key ...", flush=True)
        values = ctx.secrets()
        versions_after = token_key_versions(values)
        new_versions = sorted(set(versions_after) - set(versions_before))
        results["key_ring"] = {"before": sorted(versions_before), "after": sorted(versions_after)}
        if len(new_versions) == 1 and len(versions_after) == 1:
            new_key = values[versions_after[new_versions[0]]]
            results["readable_after"] = verify_rows(ctx, new_key, args.verify_sample)
            results["canary_tokens"] = canary_tokens_match(ctx, new_key, expected, uncertain)
        else:
            results["readable_after"] = {"error": "the ring after the rotation is not one new key"}
        print(f"  {results['readable_after']}", flush=True)
    finally:
        canary.close()
    # A failed request's cause is in the edge's and the API's logs, which go with the stack.
    keep_to = (Path(tempfile.mkdtemp(prefix="bench-rotation-logs-", dir="/tmp"))
               if report.totals().errors else None)
    results["logs"] = failure_logs(state_dir, keep_to)

    start, end = report.marker("rotation started"), report.marker("rotation finished")
    assert start is not None and end is not None
    output: dict[str, Any] = {}
    if command.lines:
        try:
            output = json.loads(command.lines[-1][1])
        except ValueError:
            output = {}
    before = _window(report, 0.0, start)
    during = _window(report, start, end)
    after = _window(report, end, report.duration_s)
    totals = report.totals()
    channel_rows = int(output.get("rows", 0))
    rotation = {
        "command": list(profile.operations.rotate_token_key),
        "returncode": command.returncode, "timed_out": command.timed_out,
        "stderr_tail": list(command.stderr_tail),
        "wall_s": round(command.duration_s, 2),
        "channel_rows": channel_rows,
        "rows_per_s_over_wall": round(channel_rows / command.duration_s) if channel_rows else None,
        "rewrite_rows_all_tables": None, "rewrite_rows_per_s": output.get("rows_per_second"),
        "batch_size": output.get("batch_size"), "batches": output.get("batches"),
        "tables": output.get("tables"), "versions": output.get("versions"),
        "ops_command_cpu_s": round((children_after.ru_utime + children_after.ru_stime)
                                   - (children_before.ru_utime + children_before.ru_stime), 1),
    }
    rotation["rows_per_ops_cpu_s"] = (round(channel_rows / rotation["ops_command_cpu_s"])
                                      if channel_rows and rotation["ops_command_cpu_s"] else None)
    phases = rotation_phases(state_dir, rotation_started_wall)
    phase_rows = []
    for phase in phases:
        p_start, p_end = phase["started_wall"] - t0_wall, phase["finished_wall"] - t0_wall
        window = _window(report, p_start, p_end)
        phase_rows.append({
            "phase": phase["phase"], "seconds": phase["seconds"],
            "at_s": round(p_start, 2), "requests": window["requests"], "errors": window["errors"],
            "p50_ms": window["p50_ms"], "p99_ms": window["p99_ms"],
            "p99_ratio": _ratio(window["p99_ms"], before["p99_ms"]),
            "cpu_cores": sampler.cores(t0_mono + p_start, t0_mono + p_end),
            **{k: phase[k] for k in ("rows", "rows_per_second", "roll") if k in phase}})
        if phase["phase"] == "rewrite":
            rotation["rewrite_rows_all_tables"] = phase.get("rows")
    rotation["phases"] = phase_rows
    results["rotation"] = rotation
    results["requests"] = {
        "before": before, "during": during, "after": after, "total": totals.as_evidence(),
        "failed": totals.errors, "first_failures": report.failures(20),
        "harness_defects": list(report.defects),
        "writes_during_rotation": sum(1 for t, _ in writes if start <= t < end)}
    results["latency"] = {
        "p50_before_ms": before["p50_ms"], "p99_before_ms": before["p99_ms"],
        "p50_during_ms": during["p50_ms"], "p99_during_ms": during["p99_ms"],
        "p50_ratio": _ratio(during["p50_ms"], before["p50_ms"]),
        "p99_ratio": _ratio(during["p99_ms"], before["p99_ms"]),
        "timeline_5s": [{"t_s": b.start_s, "requests": b.requests, "errors": b.errors,
                         "p50_ms": b.p50_ms, "p99_ms": b.p99_ms, "markers": list(b.markers)[:2]}
                        for b in report.timeline(5.0)]}
    results["cpu_cores"] = {"before": sampler.cores(t0_mono, t0_mono + start),
                            "during": sampler.cores(t0_mono + start, t0_mono + end)}

    p99_ratio = results["latency"]["p99_ratio"]
    results["target"] = {
        "wanted": f"zero failed requests and p99 ratio <= {P99_RATIO_TARGET:g}",
        "failed_requests": totals.errors,
        "p99_ratio": p99_ratio,
        "met": bool(totals.errors == 0 and not report.defects and p99_ratio is not None
                    and p99_ratio <= P99_RATIO_TARGET and command.returncode == 0
                    and results["readable_after"].get("unreadable") == 0)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="bulk channel rows to seed")
    parser.add_argument("--baseline-s", type=float, default=30.0, help="load alone before rotating")
    parser.add_argument("--tail-s", type=float, default=5.0, help="load after the rotation")
    parser.add_argument("--timeout-s", type=float, default=3600.0, help="limit for the command")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="seeding processes")
    parser.add_argument("--verify-sample", type=int, default=None,
                        help="check a random sample of N channel rows instead of all")
    parser.add_argument("--keep", action="store_true", help="leave the stack up (prints its dir)")
    parser.add_argument("--out", type=Path, default=RESULTS / "rotation.json")
    args = parser.parse_args()

    results: dict[str, Any] = {
        "benchmark": "rotation under load (issue #9)",
        "rows": args.rows, "baseline_s": args.baseline_s, "tail_s": args.tail_s,
        "python": sys.version.split()[0], "machine": platform.machine(), "cpus": os.cpu_count(),
        "cpu_model": cpu_model(), "platform": platform.platform(),
        "packages": {n: metadata.version(n) for n in ("cryptography", "psycopg", "gunicorn",
                                                      "uvicorn", "httpx")},
        "started_utc": _utc(), "load_at_start": load_average()}
    state_dir = Path(tempfile.mkdtemp(prefix="bench-rotation-", dir="/tmp"))
    try:
        run(state_dir, args, results)
    finally:
        if args.keep:
            print(f"stack left up in {state_dir}", flush=True)
        else:
            from system_under_test.local import stack

            stack.down(state_dir)
            shutil.rmtree(state_dir, ignore_errors=True)
    results["load_at_end"] = load_average()
    results["finished_utc"] = _utc()
    text = json.dumps(results, indent=2, ensure_ascii=False)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n", encoding="utf-8")
    rot, lat, req = results["rotation"], results["latency"], results["requests"]
    print(f"\nrotation of {rot['channel_rows']:,} channel rows: {rot['wall_s']} s wall, "
          f"{rot['rows_per_s_over_wall']:,} rows/s (rewrite phase {rot['rewrite_rows_per_s']:,} rows/s)")
    print(f"requests before {req['before']['requests']} / during {req['during']['requests']}, "
          f"failed {req['failed']}")
    print(f"p50 {lat['p50_before_ms']} -> {lat['p50_during_ms']} ms (x{lat['p50_ratio']}), "
          f"p99 {lat['p99_before_ms']} -> {lat['p99_during_ms']} ms (x{lat['p99_ratio']}); "
          f"target met: {results['target']['met']}")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
