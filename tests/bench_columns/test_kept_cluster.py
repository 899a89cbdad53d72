"""``bench_columns.py --cluster-dir``: a seeded cluster kept and measured again, and the peaks.

Seeding 20M rows takes longer than measuring them, so the benchmark can keep its cluster
in a directory and reuse it: the second run must not seed again, must still validate every
token (with the key kept beside the cluster), and must refuse a directory seeded for
other sizes, or one holding something else, in one line. The peaks of every process of a
measure (``ProcessTreePeaks``) are checked against a child that holds known amounts.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "bench_columns.py"
sys.path.insert(0, str(ROOT))

from bench.machine import ProcessTreePeaks  # noqa: E402

needs_postgres = pytest.mark.skipif(
    shutil.which("pg_ctlcluster") is None
    and not Path("/usr/lib/postgresql/15/bin/initdb").exists(),
    reason="PostgreSQL 15 not installed")


def bench(*args: str, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCH), "--rows", "3000", "--users", "2000", "--tokens-by",
         "pgcrypto", "--skip", "sweep", "--skip", "bcrypt-in-memory", "--repeats", "1",
         "--out", str(out), *args],
        capture_output=True, text=True, timeout=600, check=False)


@pytest.mark.integration
@pytest.mark.slow
@needs_postgres
def test_a_kept_cluster_is_seeded_once_reused_and_refused_for_other_sizes(
        reachable_dir: Path) -> None:
    kept = reachable_dir / "cluster"
    # When a run seeds into a new directory
    first = bench("--cluster-dir", str(kept), out=reachable_dir / "first.json")
    assert first.returncode == 0, (first.stdout + first.stderr)[-3000:]
    seeded = json.loads((reachable_dir / "first.json").read_text())["seed"]
    # Then it says it seeded, and the directory keeps the cluster with its record
    assert seeded["reused"] is False and seeded["channel_rows"] == 3000
    assert seeded["users"] == 2000 and seeded["cluster_dir"] == str(kept.resolve())
    record = json.loads((kept / "bench-seed.json").read_text())
    assert (record["rows"], record["users"], record["tokens_by"]) == (3000, 2000, "pgcrypto")
    assert (kept / "bench-key").stat().st_mode & 0o077 == 0
    key = (kept / "bench-key").read_text().strip()

    # When a second run names the same directory and sizes
    second = bench("--cluster-dir", str(kept), out=reachable_dir / "second.json")
    assert second.returncode == 0, (second.stdout + second.stderr)[-3000:]
    figures = json.loads((reachable_dir / "second.json").read_text())
    # Then it reuses the cluster (says so, does not seed) and still validates every token
    assert "reusing the cluster kept in" in second.stdout and "seeding" not in second.stdout
    assert figures["seed"]["reused"] is True
    assert figures["seed"]["seeded_utc"] == record["seeded_utc"]
    assert figures["seed"]["seed_seconds"] == seeded["seed_seconds"]
    fernet, = figures["fernet_validation_3000"]["runs"]
    assert (fernet["outcome"], fernet["cells"], fernet["valid"]) == ("PASS", 6000, 6000)
    bcrypt, = figures["bcrypt_format_2000"]["from_postgres"]["runs"]
    assert bcrypt["rows"] == 2000
    # And the JSON layout stays, with the end-to-end figures and every process's peaks
    for entry in (figures["fernet_validation_3000"], figures["bcrypt_format_2000"]["from_postgres"],
                  figures["sweep_database_channels"]):
        assert entry["median"] > 0 and entry["raw_read_median"] > 0 and entry["over_raw_read"] > 0
    whole = figures["end_to_end"]
    assert whole["complete"] and set(whole["stages"]) == {"fernet", "bcrypt", "sweep_database"}
    assert whole["seconds"] == round(sum(s["seconds"] for s in whole["stages"].values()), 1)
    # The check's process alone is an interpreter with the harness imported: tens of MiB
    assert fernet["all_processes_rss_peak_mib"] >= 20 and fernet["processes"] >= 1
    assert fernet["all_processes_hwm_sum_mib"] >= fernet["rss_peak_mib"] - 1
    assert whole["temp_disk_peak_mib"] >= 0
    # And the key never reaches the output
    assert key not in second.stdout + second.stderr + json.dumps(figures)

    # When a run asks for other sizes, or names a directory holding something else
    other = bench("--cluster-dir", str(kept), "--rows", "3001", out=reachable_dir / "other.json")
    (reachable_dir / "junk").mkdir()
    (reachable_dir / "junk" / "file").write_text("x")
    junk = bench("--cluster-dir", str(reachable_dir / "junk"), out=reachable_dir / "junk.json")
    # Then each is refused in one line, nothing is measured, and both directories stay as found
    for refused, says in ((other, "holds a cluster seeded with --rows 3000"),
                          (junk, "holds no finished seeding")):
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert refused.stderr.count("\n") == 1 and says in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr
    assert not (reachable_dir / "other.json").exists() and not (reachable_dir / "junk.json").exists()
    assert json.loads((kept / "bench-seed.json").read_text()) == record
    assert [p.name for p in (reachable_dir / "junk").iterdir()] == ["file"]


def _hold(temp_dir: str, mib: int, seconds: float) -> None:
    """A child that holds ``mib`` MiB resident and a deleted ``mib`` MiB file in temp_dir."""
    ballast = bytearray(os.urandom(1)) * (mib << 20)
    with tempfile.TemporaryFile(dir=temp_dir) as spill:
        spill.write(bytes(mib << 20))
        spill.flush()
        os.fsync(spill.fileno())
        time.sleep(seconds)
    del ballast


def _measure_two_holders(temp_dir: str, answer: Any) -> None:
    """In a fresh process (whose only descendants are its two holders, as a bench measure's
    are; a test runner's own process may have servers of other tests as children): the
    peaks of two children that each hold 40 MiB of memory and a deleted 40 MiB file."""
    context = multiprocessing.get_context("spawn")
    with ProcessTreePeaks(Path(temp_dir), interval=0.05) as peaks:
        children = [context.Process(target=_hold, args=(temp_dir, 40, 1.5)) for _ in range(2)]
        for child in children:
            child.start()
        for child in children:
            child.join()
    answer.put((peaks.figures(), [child.exitcode for child in children]))


def test_the_peaks_count_every_process_and_deleted_temporary_files(tmp_path: Path) -> None:
    # When two children each hold 40 MiB of memory and a deleted 40 MiB temporary file
    context = multiprocessing.get_context("spawn")
    answer = context.Queue()
    measure = context.Process(target=_measure_two_holders, args=(str(tmp_path), answer))
    measure.start()
    figures, exit_codes = answer.get(timeout=120)
    measure.join(timeout=30)
    # Then the peaks hold both at once: memory and disk
    assert measure.exitcode == 0 and exit_codes == [0, 0]
    assert figures["processes"] == 2 and figures["processes_at_once_max"] == 2
    assert figures["all_processes_rss_peak_mib"] >= 80
    assert figures["largest_process_hwm_mib"] >= 40
    assert 80 <= figures["temp_disk_peak_mib"] < 90
    # And nothing is left behind in the directory
    assert list(tmp_path.iterdir()) == []


def test_a_bad_policy_file_is_refused_before_anything_is_seeded(tmp_path: Path) -> None:
    # When the benchmark is given a policy file with an unknown key
    policy = tmp_path / "policy.toml"
    policy.write_text('version = 1\nnot_a_key = 1\n')
    result = subprocess.run([sys.executable, str(BENCH), "--policy", str(policy),
                             "--cluster-dir", str(tmp_path / "never"), "--out",
                             str(tmp_path / "out.json")],
                            capture_output=True, text=True, timeout=120, check=False)
    # Then it says so, naming the file and the key, and seeds and writes nothing
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{policy}: not_a_key" in result.stderr and "seeding" not in result.stdout
    assert not (tmp_path / "never").exists() and not (tmp_path / "out.json").exists()
