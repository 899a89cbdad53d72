"""Operator commands: the one way the harness runs a command of the audited system.

A command (``operations.rotate_token_key`` and the like in the profile) runs
without a shell, with its standard input closed, under the harness's time
limit; its output lines are streamed to a callback as they come (the rotation
check marks them on its load timeline) and kept, bounded: the last
:data:`STDOUT_LINES_KEPT` lines of standard output and the last
:data:`STDERR_LINES_KEPT` of standard error, each redacted first when the
caller hands over the run's :class:`~harness.redaction.KnownSecrets`. A
command that prints without end, or one line without end, costs a bounded
amount of memory, and a secret it prints is never kept (a long line is
redacted whole, then cut). A command killed at its limit, or when the run is
interrupted, is killed with its process group: what it started, but for a
process that made a session of its own, and for what ``docker exec`` runs
inside a container (the engine does not stop that when its client ends).

Every command finds ``VOTRIZ_AUDIT_RUN`` (:data:`RUN_MARKER`) in its
environment: a drill that records it lets a later audit tell its entries apart
from the operator's (``harness/probes/own_drills.py``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any

from harness.outcomes import ProbeError
from harness.redaction import KnownSecrets

#: Lines of standard output a run keeps (the last ones); the reference service prints one.
STDOUT_LINES_KEPT = 1000
#: Lines of standard error a run keeps (the last ones).
STDERR_LINES_KEPT = 20
#: How long the harness waits for the output readers once the command has ended.
READER_JOIN_S = 5.0
#: Longest line kept, in characters: a longer line is cut there and the rest of it dropped.
MAX_LINE_CHARS = 16 << 10
#: The variable every operator command finds in its environment, and this process's value.
RUN_MARKER_VARIABLE = "VOTRIZ_AUDIT_RUN"
MARKER_PREFIX = "votriz-audit/"
RUN_MARKER = f"{MARKER_PREFIX}{uuid.uuid4().hex[:12]}"


#: What is read past the kept part of a cut line, so that a secret across the cut is whole
#: when the line is redacted (longer than any secret's encoded form the harness knows).
CUT_MARGIN_CHARS = 64 << 10


def bounded_lines(stream: IO[str],
                  limit: int = MAX_LINE_CHARS + CUT_MARGIN_CHARS) -> Iterator[tuple[str, bool]]:
    """The lines of ``stream``, each at most ``limit`` characters (the rest of a longer one is
    read and dropped), with whether it was cut, so that a line without end costs bounded memory."""
    dropping = False
    while raw := stream.readline(limit):
        cut = len(raw) == limit and not raw.endswith("\n")
        if not dropping:
            yield raw, cut
        dropping = cut


@dataclass(frozen=True)
class CommandResult:
    """One run of an operator command.

    Attributes:
        argv: the command.
        returncode: its exit status (None when it timed out and was killed).
        duration_s: how long it ran.
        timed_out: whether it was killed at the timeout.
        lines: (seconds since start, stdout line) as it printed them (the last
            :data:`STDOUT_LINES_KEPT`).
        stderr_tail: the last lines of its standard error.
        timeout_s: the harness's limit it ran under (None: not recorded).
        started: whether it was started at all (False: the harness did not run it,
            see :meth:`never_started`).
    """

    argv: tuple[str, ...]
    returncode: int | None
    duration_s: float
    timed_out: bool
    lines: tuple[tuple[float, str], ...] = ()
    stderr_tail: tuple[str, ...] = ()
    timeout_s: float | None = None
    started: bool = True

    @classmethod
    def never_started(cls, argv: Sequence[str]) -> CommandResult:
        """The record of a command the harness decided not to run (e.g. the service was down)."""
        return cls(tuple(argv), None, 0.0, False, started=False)

    @property
    def ok(self) -> bool:
        return self.started and self.returncode == 0 and not self.timed_out

    def unfinished(self) -> str:
        """Why the harness stopped the command ('' when it ran to its end).

        The harness's own time limit says nothing about the system: a command it
        killed is a check that could not finish (ERROR), never a broken promise.
        """
        if not self.timed_out:
            return ""
        limit = self.timeout_s if self.timeout_s is not None else self.duration_s
        return (f"{' '.join(self.argv)} did not finish within {limit:g} s "
                "(killed by the harness's timeout)")

    def describe(self) -> str:
        if not self.started:
            return f"{' '.join(self.argv)} was not run"
        if self.timed_out:
            return f"{' '.join(self.argv)} did not finish in time (killed after {self.duration_s:.0f} s)"
        last = (self.stderr_tail[-1] if self.stderr_tail else
                (self.lines[-1][1] if self.lines else ""))
        return f"{' '.join(self.argv)} exited {self.returncode} after {self.duration_s:.1f} s" + (
            f": {last}" if last and not self.ok else "")

    def as_evidence(self) -> dict[str, Any]:
        return {"argv": list(self.argv), "started": self.started, "returncode": self.returncode,
                "duration_s": round(self.duration_s, 3), "timed_out": self.timed_out,
                "stdout": [{"t_s": round(t, 3), "line": line} for t, line in self.lines],
                "stderr_tail": list(self.stderr_tail)}


def _kill_group(process: subprocess.Popen[str]) -> None:
    """End the command and what it started in its session (a pg_dump left running would hold
    the output pipes and go on working against the target). A process that made a session of
    its own, or one ``docker exec`` runs inside a container, is beyond this."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def run_operation(argv: Sequence[str], timeout_s: float,
                  on_line: Callable[[str], None] | None = None, *,
                  known_secrets: KnownSecrets | None = None) -> CommandResult:
    """Run an operator command without a shell, streaming its output lines.

    Each line is redacted with ``known_secrets`` (when given) before it is kept
    or handed to ``on_line``.

    Raises:
        ProbeError: the command cannot be started.
    """
    started = time.monotonic()
    try:
        process = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   stdin=subprocess.DEVNULL, text=True, errors="replace",
                                   start_new_session=True,
                                   env={**os.environ, RUN_MARKER_VARIABLE: RUN_MARKER})
    except OSError as exc:
        raise ProbeError(f"cannot run {' '.join(argv)}: {exc.strerror}") from None
    lines: deque[tuple[float, str]] = deque(maxlen=STDOUT_LINES_KEPT)
    errors: deque[str] = deque(maxlen=STDERR_LINES_KEPT)

    def clean(line: str, cut: bool) -> str:
        # Redacted whole; of a cut line, the last CUT_MARGIN_CHARS go too: a copy of a secret
        # across the cut is at the end, whatever redaction did to the length before it.
        line = line.rstrip("\n")
        redacted = known_secrets.redact(line) if known_secrets is not None else line
        if cut:
            redacted = redacted[:max(0, len(redacted) - CUT_MARGIN_CHARS)]
        return redacted[:MAX_LINE_CHARS]

    def read_stdout() -> None:
        assert process.stdout is not None
        for raw, cut in bounded_lines(process.stdout):
            line = clean(raw, cut)
            lines.append((time.monotonic() - started, line))
            if on_line is not None:
                on_line(line)

    def read_stderr() -> None:
        assert process.stderr is not None
        for raw, cut in bounded_lines(process.stderr):
            errors.append(clean(raw, cut))

    readers = [threading.Thread(target=read_stdout, daemon=True),
               threading.Thread(target=read_stderr, daemon=True)]
    for reader in readers:
        reader.start()
    timed_out = False
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(process)
    except BaseException:
        # Interrupted (Ctrl-C; SIGTERM and SIGHUP, which the command line turns into the
        # same): its own session keeps the terminal's signal from the command, so the harness
        # ends it before it goes.
        _kill_group(process)
        raise
    for reader in readers:
        reader.join(READER_JOIN_S)
    return CommandResult(tuple(argv), None if timed_out else process.returncode,
                         time.monotonic() - started, timed_out, tuple(lines), tuple(errors),
                         timeout_s)
