"""The one operator-command runner: streams lines, times out, keeps a bounded, redacted tail."""

from __future__ import annotations

import sys

import pytest

from harness import commands
from harness.commands import run_operation
from harness.outcomes import ProbeError
from harness.redaction import KnownSecrets


def test_run_operation_streams_lines_and_times_out() -> None:
    seen: list[str] = []
    done = run_operation(["python3", "-c", "print('a'); print('b'); import sys; sys.exit(3)"], 10,
                         on_line=seen.append)
    assert (done.returncode, seen, done.ok) == (3, ["a", "b"], False)
    slow = run_operation(["sleep", "5"], 0.3)
    assert slow.timed_out and slow.returncode is None and "did not finish in time" in slow.describe()
    assert slow.unfinished() == "sleep 5 did not finish within 0.3 s (killed by the harness's timeout)"
    assert done.unfinished() == ""
    with pytest.raises(ProbeError, match=r"cannot run /nonexistent"):
        run_operation(["/nonexistent"], 1)


def test_run_operation_keeps_only_the_last_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a command that prints more lines than the runner keeps, on both streams
    monkeypatch.setattr(commands, "STDOUT_LINES_KEPT", 5)
    script = ("import sys\nfor i in range(50):\n    print(i)\n    print('e', i, file=sys.stderr)\n")
    seen: list[str] = []
    done = run_operation([sys.executable, "-c", script], 10, on_line=seen.append)
    # Then every line was streamed, but only the last ones were kept
    assert len(seen) == 50
    assert [line for _, line in done.lines] == ["45", "46", "47", "48", "49"]
    assert len(done.stderr_tail) == commands.STDERR_LINES_KEPT and done.stderr_tail[-1] == "e 49"


def test_run_operation_redacts_each_line_before_keeping_or_streaming_it() -> None:
    known = KnownSecrets()
    known.add("hunter2-the-operators-secret", "db password")
    script = ("import sys\nprint('new password: hunter2-the-operators-secret')\n"
              "print('failed with hunter2-the-operators-secret', file=sys.stderr)\n")
    seen: list[str] = []
    done = run_operation([sys.executable, "-c", script], 10, on_line=seen.append, known_secrets=known)
    kept = [line for _, line in done.lines] + list(done.stderr_tail) + seen
    assert kept and all("hunter2" not in line for line in kept)
    assert all(known.find_in(line.encode()) == [] for line in kept)


def test_a_command_the_harness_did_not_run_says_so() -> None:
    # Given a rotation the harness refused to start (the service was down)
    skipped = commands.CommandResult.never_started(["rotate", "--now"])
    # Then it is neither a success nor a timeout, and its evidence says it was not started
    assert (skipped.ok, skipped.timed_out, skipped.returncode) == (False, False, None)
    assert skipped.describe() == "rotate --now was not run"
    assert skipped.as_evidence()["started"] is False
    assert run_operation(["true"], 10).as_evidence()["started"] is True


def test_a_line_without_end_costs_bounded_memory() -> None:
    # Given a command that prints 64 MiB on one line, then a short one
    script = ("import sys\nfor _ in range(64):\n    sys.stdout.write('x' * (1 << 20))\n"
              "sys.stdout.write('\\nafter\\n')\n")
    done = run_operation([sys.executable, "-c", script], 60)
    # Then the long line is kept cut at the bound, and the next line as it is
    assert done.ok
    assert [len(line) for _, line in done.lines] == [commands.MAX_LINE_CHARS, 5]
    assert done.lines[-1][1] == "after"


def test_a_command_killed_at_its_limit_takes_what_it_started_with_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # Given a command that starts a child of its own (as a backup starts pg_dump), then waits
    marker = tmp_path / "child-still-running"
    child = tmp_path / "child.py"
    child.write_text(f"import pathlib, time\ntime.sleep(1.5)\npathlib.Path({str(marker)!r}).touch()\n")
    script = (f"import subprocess, sys, time\nsubprocess.Popen([sys.executable, {str(child)!r}])\n"
              "time.sleep(30)\n")
    done = run_operation([sys.executable, "-c", script], 0.5)
    # When the limit kills it, then its child is gone too: it never finishes its work
    import time
    time.sleep(2)
    assert done.timed_out and not marker.exists()


def test_every_command_finds_the_run_marker_in_its_environment() -> None:
    done = run_operation([sys.executable, "-c", "import os; print(os.environ['VOTRIZ_AUDIT_RUN'])"], 10)
    assert done.lines[-1][1] == commands.RUN_MARKER and commands.RUN_MARKER.startswith("votriz-audit/")


def test_a_secret_across_the_cut_of_a_long_line_leaves_nothing_of_itself() -> None:
    # Given a known secret printed so that it straddles the cut of a long line
    secret = "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZmdo"
    known = KnownSecrets()
    known.add(secret, "token key")
    script = (f"import sys\nsys.stdout.write('x' * ({commands.MAX_LINE_CHARS} - 20) + {secret!r} + 'y' * 100)\n"
              f"sys.stdout.write('\\nwhole: ' + {secret!r} + '\\n')\n")
    done = run_operation([sys.executable, "-c", script], 30, known_secrets=known)
    # Then the kept line, cut at the bound, holds no part of it: it was redacted before the cut
    kept = [line for _, line in done.lines]
    assert len(kept[0]) == commands.MAX_LINE_CHARS and secret[:12] not in kept[0] and "x" * 100 in kept[0]
    assert secret not in kept[1] and "[REDACTED" in kept[1]


def test_an_interrupted_run_ends_the_command_and_what_it_started(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import signal
    import time

    # Given a command whose child would finish its work after 1.5 s, and a run interrupted at 0.5 s
    marker = tmp_path / "child-still-running"
    child = tmp_path / "child.py"
    child.write_text(f"import pathlib, time\ntime.sleep(1.5)\npathlib.Path({str(marker)!r}).touch()\n")
    script = f"import subprocess, sys, time\nsubprocess.Popen([sys.executable, {str(child)!r}])\ntime.sleep(30)\n"

    class Interrupted(Exception):
        pass

    def interrupt(*_: object) -> None:
        raise Interrupted

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 0.5)
    try:
        with pytest.raises(Interrupted):
            run_operation([sys.executable, "-c", script], 30)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    # Then neither the command nor its child goes on
    time.sleep(2)
    assert not marker.exists()


def test_a_line_that_redaction_shrinks_keeps_no_part_of_a_secret_cut_at_its_end() -> None:
    # Given a long secret printed 41 times on one line: redaction shrinks each copy to a marker,
    # so what stays of the line reaches past the copy cut at the end of what was read
    secret = "".join(chr(65 + (i * 7) % 26) for i in range(2000))
    known = KnownSecrets()
    known.add(secret, "long token")
    done = run_operation([sys.executable, "-c", f"print({secret!r} * 41)"], 30, known_secrets=known)
    kept = done.lines[0][1]
    # Then no stretch of it is kept (of a cut line, what redaction left past the cut's margin)
    assert done.ok and len(kept) <= commands.MAX_LINE_CHARS
    assert not any(secret[at:at + 50] in kept for at in range(0, 2000, 50))
