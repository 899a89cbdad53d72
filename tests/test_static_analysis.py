"""ruff and mypy (strict, as configured in pyproject.toml) pass on the tree: CI runs only the tests,
so a type error or a lint finding would otherwise land unnoticed (two did, in the mailbox and
container probes)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
                          stdin=subprocess.DEVNULL)


def test_ruff_finds_nothing() -> None:
    done = _run([str(BIN / "ruff"), "check", "harness", "checks", "system_under_test", "tests", "bench"])
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


def test_mypy_finds_nothing(tmp_path: Path) -> None:
    # A cache of the test's own: a stale shared one never hides an error.
    done = _run([str(BIN / "mypy"), "--cache-dir", str(tmp_path / "cache")])
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
