"""Live progress of ``votriz-audit run``: on a terminal (a real pty) rich draws what runs and for
how long; in a pipe, plain lines with no terminal codes, a heartbeat while a check runs long; and
the output still ends with the tool's verdict line."""

from __future__ import annotations

import contextlib
import io
import os
import pty
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from pytester_checks import unreachable_target

from harness.progress import LiveProgress

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def test_without_a_terminal_a_long_stage_says_it_still_runs_in_plain_lines() -> None:
    # Given progress written to a pipe-like stream, with a heartbeat every 0.2 s
    out = io.StringIO()
    with LiveProgress(out, heartbeat_s=0.2) as live, live.stage("standing up the reference service (local)"):
        live.line("votriz-audit: a line of the run")
        # When the stage runs for 0.7 s
        time.sleep(0.7)
    text = out.getvalue()
    # Then it said, more than once, that it still runs and for how long, and then how long it took
    beats = re.findall(r"standing up the reference service \(local\): still running, \d+ s", text)
    assert len(beats) >= 2, text
    assert re.search(r"standing up the reference service \(local\): done after 0\.[6-9] s", text), text
    assert "votriz-audit: a line of the run" in text
    # And none of it is a terminal code
    assert "\x1b" not in text


def test_a_stage_that_raises_says_it_stopped() -> None:
    out = io.StringIO()
    try:
        with LiveProgress(out, heartbeat_s=5) as live, live.stage("standing up"):
            raise RuntimeError("compose failed")
    except RuntimeError:
        pass
    assert re.search(r"standing up: stopped after 0\.\d s", out.getvalue())


def test_a_reader_that_went_away_does_not_stop_the_run() -> None:
    # Given progress on a pipe whose reader has gone (`votriz-audit run | head -1`, after its line)
    read, write = os.pipe()
    os.close(read)
    with os.fdopen(write, "w") as pipe:
        live = LiveProgress(pipe, heartbeat_s=5)
        assert not live.reader_gone
        # When the run says its next lines, and a stage runs
        live.line("votriz-audit: a check's line")
        with live.stage("sealing"):
            pass
        live.close()
    # Then none of it raised into the run (which goes on to write and seal its results), and the
    # progress knows its reader left
    assert live.reader_gone


def _run_on_a_pty(argv: list[str], cwd: Path) -> tuple[int, str]:
    """Run ``argv`` with its stdout on a pseudo-terminal; its exit code and all it wrote there."""
    main, child = pty.openpty()
    with subprocess.Popen(argv, cwd=cwd, stdout=child, stderr=subprocess.DEVNULL,
                          stdin=subprocess.DEVNULL) as proc:
        os.close(child)
        output = bytearray()
        with contextlib.suppress(OSError):  # EIO: the child closed the terminal
            while data := os.read(main, 65536):
                output += data
        proc.wait(timeout=300)
    os.close(main)
    return proc.returncode, output.decode("utf-8", "replace")


def test_on_a_terminal_the_running_check_is_drawn_live_and_the_verdict_ends_the_output(tmp_path: Path) -> None:
    # Given a target whose edge refuses connections
    profile = unreachable_target(tmp_path)
    # When the transit checks run with stdout on a terminal
    code, text = _run_on_a_pty([sys.executable, "-m", "harness", "run", "--target", str(profile), "--only",
                                "transit", "--report-dir", str(tmp_path / "r")], tmp_path)
    # Then rich drew the running check's id, its place and its elapsed time (terminal codes)
    assert "\x1b[" in text
    plain = ANSI.sub("", text)
    assert re.search(r"transit\.\w+ \(check \d of \d+\)\s+0:00:0\d", plain), plain[-3000:]
    # And each check's line and the tool's verdict, last
    assert re.search(r"ERROR\s+transit\.hsts", plain)
    last = [line for line in plain.replace("\r", "\n").splitlines() if line.strip()][-1]
    assert last.startswith("votriz-audit: verdict "), last
    assert code == 2


def test_in_a_pipe_the_run_prints_plain_lines_ending_with_the_verdict(tmp_path: Path) -> None:
    profile = unreachable_target(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "harness", "run", "--target", str(profile), "--only", "transit",
                           "--report-dir", str(tmp_path / "r")], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, check=False)
    assert "\x1b" not in proc.stdout
    lines = proc.stdout.splitlines()
    assert any(re.match(r"\s+ERROR\s+transit\.hsts", line) for line in lines), proc.stdout
    assert lines[-1].startswith("votriz-audit: verdict "), lines[-3:]
    assert proc.returncode == 2


@pytest.mark.integration
def test_standing_up_the_reference_says_it_still_runs_and_the_verdict_stays_last(tmp_path: Path) -> None:
    # Given a state directory the local stack's service user can reach (not pytest's private tree)
    parent = Path(tempfile.mkdtemp(prefix="sut-stack-progress-", dir="/tmp"))
    parent.chmod(0o755)
    try:
        # When the reference service is stood up, audited on one check and taken down, in a pipe
        proc = subprocess.run([sys.executable, "-m", "harness", "run", "--backend", "local", "--state-dir",
                               str(parent / "state"), "--check", "transit.hsts", "--report-dir",
                               str(tmp_path / "r")], capture_output=True, text=True, timeout=600, check=False)
    finally:
        shutil.rmtree(parent, ignore_errors=True)
    lines = proc.stdout.splitlines()
    # Then the stand-up said, at least once a run of 10 s, that it still runs, and how long it took
    up = next(i for i, line in enumerate(lines) if "standing up the reference service (local): done after" in line)
    took = float(re.search(r"done after ([\d.]+) s", lines[up]).group(1))
    beats = [line for line in lines[:up] if re.search(r"standing up .*: still running, \d+ s", line)]
    assert len(beats) >= int(took // 10) - 1, proc.stdout
    # And the take-down came before the verdict, which is the last line; no terminal code anywhere
    assert any("taking the reference service down (local): done after" in line for line in lines[up:-1])
    assert lines[-1].startswith("votriz-audit: verdict PASS, exit 0"), proc.stdout[-2000:]
    assert "\x1b" not in proc.stdout
    assert proc.returncode == 0


#: What a hostile edge may put in a header a check quotes: a device status request, a new window
#: title, erase line; none of it may reach the reader's terminal raw.
HOSTILE = "nginx\x1b[6n\x1b]0;owned\x07\x1b[2K\r"


@pytest.mark.parametrize("terminal", [False, True], ids=["pipe", "terminal"])
def test_a_line_quoting_the_target_reaches_the_reader_escaped(terminal: bool) -> None:
    # Given progress on a pipe, or drawn by rich as on a terminal
    out = io.StringIO()
    with LiveProgress(out, terminal=terminal, heartbeat_s=5) as live:
        # When a check's line quotes a hostile Server header
        live.line(f"  FAIL  transit.security_headers  Server: {HOSTILE}")
    text = out.getvalue()
    # Then its control characters are shown escaped, never written raw
    assert "nginx\\x1b[6n\\x1b]0;owned\\x07\\x1b[2K\\x0d" in text, repr(text)
    assert "\x1b[6n" not in text and "\x1b]0;" not in text and "\x07" not in text
    assert terminal or "\r" not in text  # (rich's own redraws return the carriage)
