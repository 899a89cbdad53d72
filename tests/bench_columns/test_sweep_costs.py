"""``bench/sweep_costs.py``: where the database sweep's time goes, on a tiny kept cluster, and
one line for a directory that holds no seeded cluster."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.integration, pytest.mark.slow,
              pytest.mark.skipif(shutil.which("pg_ctlcluster") is None and
                                 not Path("/usr/lib/postgresql/15/bin/initdb").exists(),
                                 reason="PostgreSQL 15 not installed")]


def _run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "bench" / script), *args],
                          capture_output=True, text=True, timeout=600, check=False)


def test_the_costs_of_a_kept_clusters_sweep_are_measured(reachable_dir: Path) -> None:
    # Given a cluster seeded and kept by bench_columns (nothing measured there)
    kept, sizes = reachable_dir / "cluster", ("--rows", "3000", "--users", "2000")
    seeded = _run("bench_columns.py", *sizes, "--tokens-by", "pgcrypto", "--cluster-dir",
                  str(kept), "--out", str(reachable_dir / "seed.json"), "--skip", "fernet",
                  "--skip", "bcrypt", "--skip", "sweep", "--skip", "sweep-db")
    assert seeded.returncode == 0, (seeded.stdout + seeded.stderr)[-3000:]
    # When the sweep's costs are measured on it
    out = reachable_dir / "costs.json"
    costs = _run("sweep_costs.py", "--cluster-dir", str(kept), *sizes, "--repeats", "1",
                 "--out", str(out))
    assert costs.returncode == 0, (costs.stdout + costs.stderr)[-3000:]
    figures = json.loads(out.read_text())
    # Then every stage read the whole table, and each has its CPU seconds
    text = figures["copy_text"]["bytes_median"]
    assert text > 3000 * 100 and figures["automaton"]["bytes_median"] == text
    assert figures["sweep_one_read"]["bytes_median"] == text == figures["sweep_parts"]["bytes_median"]
    assert figures["copy_binary"]["server_cpu_seconds_median"] >= 0
    assert figures["sweep_parts"]["hits_median"] == 0 and figures["automaton"]["hits_median"] == 0


@pytest.mark.parametrize("stray", [True, False])
def test_a_directory_without_a_seeded_cluster_is_one_line_and_left_as_it_was(
        reachable_dir: Path, stray: bool) -> None:
    # Given a directory holding something else, or nothing
    if stray:
        (reachable_dir / "stray").write_text("not a cluster")
    refused = _run("sweep_costs.py", "--cluster-dir", str(reachable_dir), "--repeats", "1",
                   "--out", str(reachable_dir.parent / f"{reachable_dir.name}.json"))
    # Then it is refused in one line, and nothing was made in it
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.startswith("sweep_costs: --cluster-dir ") and refused.stderr.count("\n") == 1
    assert [p.name for p in reachable_dir.iterdir()] == (["stray"] if stray else [])
