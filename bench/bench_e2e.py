"""End to end: ``votriz-audit run`` on the reference service, per backend, warm and (optionally) cold.

    ./dev -- python bench/bench_e2e.py [--backend docker --backend local] [--repeat 2] [--cold] [--fresh]

Each run is the release-gate command a pipeline would run, as a child
process: stand the reference service up, run every check (key rotation under
load at its default size included), write and sign the report, tear down.
Printed and written to ``bench/results/e2e.json``: the wall time of the whole
command, how long standing up took (the time before the first check starts,
from the run's own ``started_at``), the checks' total, the time per check
family (area) and the five slowest checks, so the slowest stage is obvious, and
what follows the last check (report, seal, tear-down), with the load averages
before each run.

*Warm* means the Docker images exist (they are built once if missing, not
timed); *cold* (``--cold``, Docker only) first removes every
``votriz-audit/*`` image, so the run includes building the bases from Debian
packages and the images from them.

*Fresh* (``--fresh``) is a new user's first run, measured without touching
what others use: a clone of this checkout's HEAD in a temporary directory,
where ``./dev audit`` installs the virtualenv (empty pip cache), builds every
image under a tag namespace of its own (``VOTRIZ_IMAGE_REPOSITORY``, empty
download cache) and runs the audit. Its output is time-stamped line by line,
so the phases (install, images, stand-up, checks, tear-down) are read off
it. Debian packages are only installed if missing (on a machine that has them,
as here, that phase is not measured). The namespace's images are removed after.
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.machine import cpu_model, load_average  # noqa: E402


def remove_images(repository: str = "votriz-audit") -> int:
    """Remove every ``REPOSITORY/*`` image (a cold start); the number removed."""
    import docker

    client = docker.from_env(timeout=300)
    removed = 0
    try:
        for image in client.images.list(name=f"{repository}/*"):
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
        load_before = load_average()
        started = time.monotonic()
        wall_start = dt.datetime.now(dt.UTC)
        proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=3600, check=False)
        wall = time.monotonic() - started
        results_file = report / "results.json"
        if not results_file.exists():
            raise SystemExit(f"{backend}: no results (exit {proc.returncode}): {proc.stderr[-800:]}")
        results = json.loads(results_file.read_text(encoding="utf-8"))
    return {"exit_code": proc.returncode, **run_figures(results, wall, wall_start), "load_before": load_before}


def run_figures(results: dict[str, Any], wall: float, wall_start: dt.datetime) -> dict[str, object]:
    """One run's figures from its results.json, its wall time and when it started (UTC)."""
    per_area: dict[str, float] = defaultdict(float)
    for result in results["results"]:
        per_area[result["check_id"].split(".", 1)[0]] += float(result["duration_s"])
    by_time = sorted(results["results"], key=lambda r: -float(r["duration_s"]))
    checks_started = dt.datetime.fromisoformat(results["started_at"])
    checks_finished = dt.datetime.fromisoformat(results["finished_at"])
    return {
        # Outcome counts of the checks (results.json's summary named them "counts" before).
        "summary": results["summary"].get("checks", results["summary"].get("counts")),
        "wall_s": round(wall, 1),
        "stand_up_s": round((checks_started - wall_start).total_seconds(), 1),
        "checks_s": round(sum(per_area.values()), 1),
        "per_area_s": {area: round(seconds, 1) for area, seconds in sorted(per_area.items())},
        "slowest_check": {"check_id": by_time[0]["check_id"] if by_time else "",
                          "seconds": round(float(by_time[0]["duration_s"]), 1) if by_time else 0.0},
        # The five slowest checks, and what follows the last one (report, seal, tear-down).
        "slowest_checks": {r["check_id"]: round(float(r["duration_s"]), 1) for r in by_time[:5]},
        "after_checks_s": round(wall - (checks_finished - wall_start).total_seconds(), 1),
    }


def fresh_run() -> dict[str, object]:
    """``./dev audit`` in a fresh clone, its own image namespace and empty caches; its phases."""
    namespace = f"votriz-bench-fresh-{os.getpid()}"
    with tempfile.TemporaryDirectory(prefix="votriz-bench-fresh-") as tmp:
        clone = Path(tmp) / "clone"
        subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True, timeout=300)
        env = {**os.environ, "VOTRIZ_IMAGE_REPOSITORY": namespace,
               "VOTRIZ_DOCKER_CACHE": str(Path(tmp) / "docker-cache"),
               "PIP_CACHE_DIR": str(Path(tmp) / "pip-cache")}
        env.pop("VIRTUAL_ENV", None)
        lines: list[tuple[float, str]] = []
        started = time.monotonic()
        proc = subprocess.Popen(["./dev", "audit", "--report-dir", str(Path(tmp) / "report")], cwd=clone,
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append((time.monotonic() - started, line.rstrip("\n")))
        code = proc.wait(timeout=3600)
        wall = time.monotonic() - started
        removed = remove_images(namespace)
    return {"exit_code": code, "wall_s": round(wall, 1), "images_removed_after": removed,
            **fresh_phases(lines)}


def fresh_phases(lines: list[tuple[float, str]]) -> dict[str, float | None]:
    """When each phase ended, in seconds from the start, read off the time-stamped output."""
    def first(predicate: Callable[[str], bool]) -> float | None:
        return next((t for t, line in lines if predicate(line)), None)

    venv = first(lambda line: not line.startswith("dev:"))
    images = max((t for t, line in lines if line.startswith("images: ") and (" built in " in line)),
                 default=None)
    stood_up = first(lambda line: "reference service up" in line)
    verdict = first(lambda line: line.startswith("votriz-audit: verdict"))
    return {"install_done_s": None if venv is None else round(venv, 1),
            "images_done_s": None if images is None else round(images, 1),
            "stand_up_done_s": None if stood_up is None else round(stood_up, 1),
            "verdict_s": None if verdict is None else round(verdict, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--backend", action="append", choices=["docker", "local"], default=[])
    parser.add_argument("--repeat", type=int, default=2, help="warm runs per backend")
    parser.add_argument("--cold", action="store_true", help="also one cold Docker run (removes the images)")
    parser.add_argument("--fresh", action="store_true",
                        help="also a new user's first ./dev audit (fresh clone, own image namespace)")
    parser.add_argument("--out", type=Path, default=RESULTS / "e2e.json")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: both backends need it")
    # --fresh alone measures only the first run.
    backends = args.backend or ([] if args.fresh else ["docker", "local"])
    figures: dict[str, object] = {"machine": {"cpus": os.cpu_count(), "cpu_model": cpu_model(),
                                              "platform": platform.platform(),
                                              "load_before": load_average()},
                                  "taken_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    if args.fresh:
        figures["fresh"] = fresh_run()
        print(f"fresh ./dev audit: {json.dumps(figures['fresh'])}")
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
