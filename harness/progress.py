"""Live progress on the command line: what is running now and for how long.

On a terminal, one line drawn by rich (a spinner, what runs, its elapsed time, redrawn
four times a second) above which the run's own lines are printed. Elsewhere (a CI log,
a pipe) plain lines only, no terminal codes: a line when a stage ends and, while one
runs, a line every ``heartbeat_s`` seconds saying it still runs and for how long.

:class:`CheckProgress` is the pytest plugin that ``votriz-audit run`` hands to pytest:
each check's id, its place in the run and its elapsed time while it runs; the plugin's
lines (:func:`harness.run_state.say`) are printed through it.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import threading
import time
from collections.abc import Iterator
from typing import TextIO

import pytest
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

from harness.cli_output import printable
from harness.run_state import RUN_OUTPUT, check_id_of


def private_stream(stream: TextIO) -> TextIO:
    """A stream on a duplicate of ``stream``'s file descriptor: pytest redirects descriptors 1 and 2
    while a check runs, and the progress must still reach the terminal. ``stream`` itself when it
    has no descriptor (a test's in-memory capture)."""
    try:
        fd = stream.fileno()
    except (OSError, ValueError, io.UnsupportedOperation):
        return stream
    # A reader that went away (`votriz-audit run | head -1`) fails this flush: the lines are lost,
    # the run is not (the stream's last write, the verdict, fails again and ends it with 141).
    with contextlib.suppress(BrokenPipeError):
        stream.flush()
    return open(os.dup(fd), "w", buffering=1, encoding="utf-8", errors="replace")


class LiveProgress:
    """What runs now, shown live; the run's lines printed above it.

    Args:
        stream: where to write (a duplicate of its descriptor is used: :func:`private_stream`).
        terminal: draw with rich; default: whether ``stream`` is a terminal.
        heartbeat_s: without a terminal, how often a long stage says it still runs.
    """

    def __init__(self, stream: TextIO | None = None, *, terminal: bool | None = None,
                 heartbeat_s: float = 10.0) -> None:
        given = stream if stream is not None else sys.stdout
        self._stream = private_stream(given)
        self._owned = self._stream is not given
        self.terminal = self._stream.isatty() if terminal is None else terminal
        self._heartbeat_s = heartbeat_s
        self._lock = threading.Lock()
        self._what: str | None = None
        self._since = time.monotonic()
        self._stop = threading.Event()
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._beat: threading.Thread | None = None
        self._gone = False  # the reader closed the stream
        if self.terminal:
            console = Console(file=self._stream, force_terminal=True)
            self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                                      console=console, transient=True, redirect_stdout=False,
                                      redirect_stderr=False, refresh_per_second=4)
            self._progress.start()
        else:
            self._beat = threading.Thread(target=self._heartbeat, name="progress-heartbeat", daemon=True)
            self._beat.start()

    def start(self, what: str) -> None:
        """``what`` runs from now on (what ran before, if anything, has ended)."""
        with self._lock:
            self._what, self._since = what, time.monotonic()
            if self._progress is None:
                return
            if self._task is None:
                self._task = self._progress.add_task(what, total=None)
            else:
                self._progress.reset(self._task, description=what)

    def done(self) -> float:
        """What runs has ended; its elapsed seconds."""
        with self._lock:
            elapsed = time.monotonic() - self._since
            self._what = None
            if self._progress is not None and self._task is not None:
                self._progress.remove_task(self._task)
                self._task = None
            return elapsed

    def line(self, text: str) -> None:
        """Print one line of the run's output (above the live line on a terminal), its control
        characters escaped (:func:`harness.cli_output.printable`).

        A reader that went away (``votriz-audit run | head -1``) does not stop the audit: the
        rest is not shown, and the run still writes and seals its results.
        """
        text = printable(text)  # no terminal codes from the audited system, on a tty or a pipe
        with self._lock:
            if self._gone:
                return
            try:
                if self._progress is not None:
                    self._progress.console.print(text, markup=False, highlight=False, soft_wrap=True)
                else:
                    self._stream.write(text + "\n")
                    self._stream.flush()
            except (BrokenPipeError, ValueError):
                self._gone = True

    @property
    def reader_gone(self) -> bool:
        """The stream's reader went away: lines are no longer written."""
        return self._gone

    @contextlib.contextmanager
    def stage(self, what: str) -> Iterator[None]:
        """Show ``what`` while the block runs, then one line saying how long it took."""
        self.start(what)
        ok = False
        try:
            yield
            ok = True
        finally:
            elapsed = self.done()
            self.line(f"votriz-audit: {what}: {'done' if ok else 'stopped'} after {elapsed:.1f} s")

    def close(self) -> None:
        """Stop drawing; leave the stream's descriptor as it was."""
        self._stop.set()
        if self._progress is not None:
            self._progress.stop()
        if self._beat is not None:
            self._beat.join(timeout=1)
        if self._owned:
            with contextlib.suppress(OSError):
                self._stream.close()

    def _heartbeat(self) -> None:
        while not self._stop.wait(self._heartbeat_s):
            with self._lock:
                what, since = self._what, self._since
            if what is not None and time.monotonic() - since >= self._heartbeat_s:
                with contextlib.suppress(OSError, ValueError):
                    self.line(f"  ... {what}: still running, {time.monotonic() - since:.0f} s")

    def __enter__(self) -> LiveProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class CheckProgress:
    """The pytest plugin of ``votriz-audit run``'s live progress: the check that runs, its place
    and its elapsed time; the run's own lines printed through :class:`LiveProgress`."""

    def __init__(self, live: LiveProgress) -> None:
        self.live = live
        self.total = 0
        self.begun = 0

    def pytest_configure(self, config: pytest.Config) -> None:
        config.stash[RUN_OUTPUT] = self.live

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.total = len(session.items)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        self.begun += 1
        self.live.start(f"{check_id_of(item)} (check {self.begun} of {self.total})")

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.live.start("writing the results, rendering the report, sealing the bundle")

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self.live.done()
