"""Run ``votriz-audit run --target`` as a release pipeline does, in a child process, and read its results;
stand up the private local stack a test module audits.

Shared by the tests that judge the whole command (reliability, target faults,
the Docker stack) and by tests/conftest.py's stack fixtures: importable because
pytest's ``pythonpath`` includes ``tests``.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from system_under_test.local.stack import StackInfo, down, up

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class CliRun:
    """One finished ``votriz-audit run`` in a child process.

    Attributes:
        returncode: its exit code.
        output: stdout and stderr together.
        seconds: how long it took.
        results: check id -> (outcome, message), from results.json.
        durations: check id -> seconds it took, its fixtures included.
    """

    returncode: int
    output: str
    seconds: float
    results: dict[str, tuple[str, str]]
    durations: dict[str, float]

    def outcome(self, check_id: str) -> str:
        return self.results[check_id][0]

    def message(self, check_id: str) -> str:
        return self.results[check_id][1]


def run_cli(profile: Path, report: Path, policy: Path | None = None, *, only: Sequence[str] = (),
            checks: Sequence[str] = (), env: Mapping[str, str] | None = None,
            limit_s: float = 150) -> CliRun:
    """``python -m harness run --target PROFILE``; the report must be written, with no traceback."""
    argv = [sys.executable, "-m", "harness", "run", "--target", str(profile), "--report-dir", str(report)]
    if policy is not None:
        argv += ["--policy", str(policy)]
    for area in only:
        argv += ["--only", area]
    for check in checks:
        argv += ["--check", check]
    start = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=limit_s, cwd=REPO,
                          env={**os.environ, **(env or {})})
    seconds = time.monotonic() - start
    output = proc.stdout + proc.stderr
    assert (report / "results.json").is_file(), output[-3000:]
    assert (report / "report.html").is_file(), output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    results = json.loads((report / "results.json").read_text())["results"]
    return CliRun(proc.returncode, output, seconds,
                  {r["check_id"]: (r["outcome"], r["message"]) for r in results},
                  {r["check_id"]: float(r["duration_s"]) for r in results})


def new_state_dir() -> Path:
    """A fresh, empty state directory under /tmp (``sut-stack-*``), which the unprivileged
    service user can reach, unlike pytest's private tmp tree."""
    return Path(tempfile.mkdtemp(prefix="sut-stack-", dir="/tmp"))


@contextlib.contextmanager
def running_stack(faults: Sequence[str] = ()) -> Iterator[StackInfo]:
    """A local stack with ``faults`` for the duration of the block; always torn down."""
    state_dir = new_state_dir()
    try:
        yield up(state_dir, tuple(faults))
    finally:
        down(state_dir)


def send_body(handler: http.server.BaseHTTPRequestHandler, status: int, body: bytes,
              content_type: str | None = None) -> None:
    """Answer a fake peer's request: ``status``, ``body`` with its length (and type) declared."""
    handler.send_response(status)
    if content_type is not None:
        handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def closed_port() -> int:
    """A loopback TCP port nothing listens on (bound and released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
