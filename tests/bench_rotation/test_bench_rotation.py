"""The rotation benchmark's own arithmetic: CPU per part from /proc samples, phases from ops.log."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_rotation.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_rotation", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_rotation"] = module
    spec.loader.exec_module(module)
    return module


def test_cores_counts_each_part_over_the_window_including_processes_that_died(bench):
    # Given: samples 1 s apart; pid 20 (ops) ends after the second sample, pid 30 starts later.
    tick = bench.CLOCK_TICKS
    sampler = bench.CpuSampler({}, {})
    sampler.samples = [
        (0.0, 0, {10: ("postgres", 0, 0), 20: ("ops command", 0, 0)}),
        (1.0, 2 * tick, {10: ("postgres", tick // 2, 0), 20: ("ops command", tick, 10**9)}),
        (2.0, 4 * tick, {10: ("postgres", tick, 0), 30: ("other", tick, 0)}),
    ]
    # When: the window is the whole 2 s.
    cores = sampler.cores(0.0, 2.0)
    # Then: half a core of PostgreSQL, the dead ops process's last figure, the machine at 2 cores.
    assert cores["on_cpu"]["postgres"] == 0.5
    assert cores["on_cpu"]["ops command"] == 0.5
    assert cores["on_cpu"]["other"] == 0.5
    assert cores["on_cpu"]["machine (all cores busy)"] == 2.0
    assert cores["waiting_for_cpu"] == {"ops command": 0.5, "postgres": 0.0}


def test_cores_of_a_later_window_subtracts_what_was_used_before_it(bench):
    tick = bench.CLOCK_TICKS
    sampler = bench.CpuSampler({}, {})
    sampler.samples = [(0.0, 0, {10: ("api", 0, 0)}), (1.0, tick, {10: ("api", tick, 0)}),
                       (2.0, tick, {10: ("api", tick, 0)})]
    assert sampler.cores(1.0, 2.0)["on_cpu"] == {"machine (all cores busy)": 0.0}


def test_rotation_phases_reads_only_this_runs_progress_entries(bench, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    entries = [
        {"time": "t", "command": "rotate-token-key", "progress": {
            "phase": "stage", "started": "2026-12-01T01:00:00.000+00:00",
            "finished": "2026-12-01T01:00:01.500+00:00", "seconds": 1.5}},
        {"time": "t", "command": "rotate-token-key", "progress": {
            "phase": "rewrite", "started": "2026-12-01T02:00:00.000+00:00",
            "finished": "2026-12-01T02:01:00.000+00:00", "seconds": 60.0, "rows": 9}},
        {"time": "t", "ok": True, "command": "rotate-token-key", "rows": 9},
    ]
    (logs / "ops.log").write_text("\n".join(json.dumps(e) for e in entries) + "\nnot json\n")
    since = bench.datetime.fromisoformat("2026-12-01T02:00:00+00:00").timestamp()
    phases = bench.rotation_phases(tmp_path, since)
    assert [p["phase"] for p in phases] == ["rewrite"]
    assert phases[0]["finished_wall"] - phases[0]["started_wall"] == 60.0
