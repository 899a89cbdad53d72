"""End to end: ``votriz-audit run`` on the reference service, per backend, warm and (optionally) cold.

    ./dev -- python bench/bench_e2e.py [--backend docker --backend local] [--repeat 2] [--cold]

Each run is the release-gate command a pipeline would run, as a child
process: stand the reference service up, run every check (key rotation under
load at its default size included), write and sign the report, tear down.
Printed and written to ``bench/results/e2e.json``: the wall time of the whole
command, how long standing up took (the time before the first check starts,
from the run's own ``started_at``), the checks' total, and the time per check
family (area), so the slowest stage is obvious.

*Warm* means the Docker images exist (they are built once if missing, not
timed); *cold* (``--cold``, Docker only) first removes every
``votriz-audit/*`` image, so the run includes building the bases from Debian
packages and the images from them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.machine import cpu_model, load_average  # noqa: E402


def remove_images() -> int:
    """Remove every ``votriz-audit/*`` image (a cold start); the number removed."""
    import docker

    client = docker.from_env(timeout=300)
    removed = 0
    try:
        for image in client.images.list(name="votriz-audit/*"):
            client.images.remove(image.id, force=True)
            removed += 1
    finally:
        client.close()
    return removed


def ensure_images() -> None:
    """Build the Docker images if missing (not timed: a warm run starts with them)."""
    subprocess.run([sys.executable, "-m", "system_under_test.docker.images"], cwd=REPO, check=True,
                   capture_output=True, timeout=1800)


def one_run(backend: str) -> dict[str, object]:
    """``votriz-audit run --backend BACKEND`` once; its timings from the outside and from results.json."""
    with tempfile.TemporaryDirectory(prefix="votriz-bench-e2e-") as tmp:
        # The local backend runs PostgreSQL and nginx as an unprivileged user: it must reach the state.
        Path(tmp).chmod(0o755)
        report = Path(tmp) / "report"
        argv = [sys.executable, "-m", "harness", "run", "--backend", backend, "--report-dir", str(report),
                "--state-dir", str(Path(tmp) / "state")]
        started = time.monotonic()
        wall_start = dt.datetime.now(dt.UTC)
        proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=3600, check=False)
        wall = time.monotonic() - started
        results_file = report / "results.json"
        if not results_file.exists():
            raise SystemExit(f"{backend}: no results (exit {proc.returncode}): {proc.stderr[-800:]}")
        results = json.loads(results_file.read_text(encoding="utf-8"))
    per_area: dict[str, float] = defaultdict(float)
    slowest = ("", 0.0)
    for result in results["results"]:
        area = result["check_id"].split(".", 1)[0]
        per_area[area] += float(result["duration_s"])
        if float(result["duration_s"]) > slowest[1]:
            slowest = (result["check_id"], float(result["duration_s"]))
    checks_started = dt.datetime.fromisoformat(results["started_at"])
    return {
        "exit_code": proc.returncode,
        "summary": results["summary"]["counts"],
        "wall_s": round(wall, 1),
        "stand_up_s": round((checks_started - wall_start).total_seconds(), 1),
        "checks_s": round(sum(per_area.values()), 1),
        "per_area_s": {area: round(seconds, 1) for area, seconds in sorted(per_area.items())},
        "slowest_check": {"check_id": slowest[0], "seconds": round(slowest[1], 1)},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--backend", action="append", choices=["docker", "local"], default=[])
    parser.add_argument("--repeat", type=int, default=2, help="warm runs per backend")
    parser.add_argument("--cold", action="store_true", help="also one cold Docker run (removes the images)")
    parser.add_argument("--out", type=Path, default=RESULTS / "e2e.json")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: both backends need it")
    backends = args.backend or ["docker", "local"]
    figures: dict[str, object] = {"machine": {"cpus": os.cpu_count(), "cpu_model": cpu_model(),
                                              "platform": platform.platform(),
                                              "load_before": load_average()},
                                  "taken_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    for backend in backends:
        runs: dict[str, object] = {}
        if backend == "docker" and args.cold:
            removed = remove_images()
            print(f"docker cold: removed {removed} images")
            runs["cold"] = one_run(backend)
            print(f"docker cold: {json.dumps(runs['cold'])}")
        elif backend == "docker":
            ensure_images()
        warm = []
        for number in range(args.repeat):
            warm.append(one_run(backend))
            print(f"{backend} warm {number + 1}: {json.dumps(warm[-1])}")
        runs["warm"] = warm
        runs["warm_median_wall_s"] = statistics.median(float(str(r["wall_s"])) for r in warm)
        runs["warm_median_checks_s"] = statistics.median(float(str(r["checks_s"])) for r in warm)
        figures[backend] = runs
        print(f"{backend}: warm median {runs['warm_median_wall_s']} s "
              f"(checks {runs['warm_median_checks_s']} s)")
    figures["load_after"] = load_average()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
