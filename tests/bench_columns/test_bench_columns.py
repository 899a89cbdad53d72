"""The column benchmark still runs the checks' own code: a tiny run end to end.

The benchmark replaces only the HSM read of ``harness.probes.stored_tokens`` and
calls the at-rest observation functions and verdicts directly, so a change to their signatures breaks
it without breaking any check; this run (a few thousand rows, a 10 MiB sweep)
catches that in CI instead of at the next ``./dev bench``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_columns.py"

pytestmark = [pytest.mark.integration, pytest.mark.slow,
              pytest.mark.skipif(shutil.which("pg_ctlcluster") is None and
                                 not Path("/usr/lib/postgresql/15/bin/initdb").exists(),
                                 reason="PostgreSQL 15 not installed")]


def test_a_tiny_column_benchmark_runs_every_measure_and_finds_every_needle(tmp_path: Path) -> None:
    # When the benchmark runs at a tiny size
    out = tmp_path / "columns.json"
    result = subprocess.run(
        [sys.executable, str(BENCH), "--rows", "3000", "--users", "2000", "--sweep-gib", "0.01",
         "--canaries", "3", "--repeats", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=600, check=False)
    # Then it ends well, and each measure judged every row or byte it was given
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "Traceback" not in result.stderr
    figures = json.loads(out.read_text())
    fernet, = figures["fernet_validation_3000"]["runs"]
    assert (fernet["outcome"], fernet["cells"], fernet["valid"]) == ("PASS", 6000, 6000)
    bcrypt, = figures["bcrypt_format_2000"]["from_postgres"]["runs"]
    assert bcrypt["rows"] == 2000 and sum(bcrypt["schemes"].values()) == 2000
    # And the Fernet and bcrypt entries carry the bare read of the same rows, same run
    for entry in (figures["fernet_validation_3000"], figures["bcrypt_format_2000"]["from_postgres"]):
        raw, = entry["raw_read_runs"]
        assert raw["rows"] in (3000, 2000) and raw["bytes"] > 0 and entry["raw_read_median"] > 0
        assert entry["over_raw_read"] == round(entry["median"] / entry["raw_read_median"], 3)
    assert figures["sweep_database_channels"]["over_raw_read"] > 0
    sweep = figures["sweep_file"]
    assert sweep["dump_bytes"] >= 10 << 20 and sweep["canaries"] == 3
    assert [run["hits"] for run in sweep["runs"]] == [sweep["needles"]]
