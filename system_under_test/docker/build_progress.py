"""Live progress of the image builds: one row per image with its step and elapsed time.

A first run builds every image (minutes); without this it printed one line
and nothing else. On a terminal, rich draws one row per image (a spinner,
the step, the elapsed time), redrawn several times a second. Anywhere else
(CI logs, a pipe) it writes plain lines: one when an image starts a step or
ends, and every ``heartbeat_s`` one line naming what is still being built, so
that a log also shows progress every few seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import IO, Protocol

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

HEARTBEAT_S = 10.0


class BuildProgress(Protocol):
    """What the image builder reports: each image's steps and its end."""

    def step(self, name: str, what: str) -> None:
        """``name`` (an image) has begun ``what`` (e.g. ``downloading 12 packages``)."""

    def finished(self, name: str, how: str) -> None:
        """``name`` is done; ``how`` says how (``built in 23.4 s``, ``failed: …``)."""

    def close(self) -> None:
        """No more events: stop redrawing (idempotent)."""


class PlainProgress:
    """Plain lines for logs: a line per step and per end, and a heartbeat line.

    Attributes:
        write: where each line goes (without its newline).
        heartbeat_s: seconds between the lines naming what is still running.
    """

    def __init__(self, write: Callable[[str], None], *, heartbeat_s: float = HEARTBEAT_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.write = write
        self.heartbeat_s = heartbeat_s
        self._clock = clock
        self._lock = threading.Lock()
        self._running: dict[str, tuple[str, float]] = {}  # name -> (step, started)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="image-build-heartbeat", daemon=True)
        self._thread.start()

    def step(self, name: str, what: str) -> None:
        """Write ``images: NAME: WHAT``; the image counts as running from its first step."""
        with self._lock:
            started = self._running.get(name, ("", self._clock()))[1]
            self._running[name] = (what, started)
        self.write(f"images: {name}: {what}")

    def finished(self, name: str, how: str) -> None:
        """Write ``images: NAME: HOW``; the image no longer appears in the heartbeat."""
        with self._lock:
            self._running.pop(name, None)
        self.write(f"images: {name}: {how}")

    def still_running(self) -> str:
        """The heartbeat's line (``''`` when nothing runs): each running image, step, seconds."""
        now = self._clock()
        with self._lock:
            running = sorted(self._running.items())
        if not running:
            return ""
        return "images: still working: " + ", ".join(
            f"{name} ({what}, {now - started:.0f} s)" for name, (what, started) in running)

    def _beat(self) -> None:
        while not self._stopped.wait(self.heartbeat_s):
            line = self.still_running()
            if line:
                self.write(line)

    def close(self) -> None:
        """Stop the heartbeat."""
        self._stopped.set()


class LiveProgress:
    """rich's live display on a terminal: one row per image, redrawn 8 times a second."""

    def __init__(self, console: Console) -> None:
        self._progress = Progress(SpinnerColumn(), TextColumn("[bold]{task.fields[name]:<7}"),
                                  TextColumn("{task.description}"), TimeElapsedColumn(),
                                  console=console, refresh_per_second=8, transient=False)
        self._tasks: dict[str, TaskID] = {}
        self._lock = threading.Lock()
        self._progress.start()
        self._closed = False

    def _task(self, name: str) -> TaskID:
        with self._lock:
            if name not in self._tasks:
                self._tasks[name] = self._progress.add_task("", name=name, total=None)
            return self._tasks[name]

    def step(self, name: str, what: str) -> None:
        """Show ``what`` on the image's row (its clock runs from its first step)."""
        self._progress.update(self._task(name), description=what)

    def finished(self, name: str, how: str) -> None:
        """Show ``how`` on the image's row and stop its spinner and clock."""
        task = self._task(name)
        self._progress.update(task, description=how, total=1, completed=1)
        self._progress.stop_task(task)

    def close(self) -> None:
        """Draw the rows a last time and leave them on the screen."""
        if not self._closed:
            self._closed = True
            self._progress.stop()


def progress_for(stream: IO[str]) -> BuildProgress:
    """Live rows when ``stream`` is a terminal, plain lines to it otherwise."""
    console = Console(file=stream)
    if console.is_terminal:
        return LiveProgress(console)

    def write(line: str) -> None:
        stream.write(line + "\n")
        stream.flush()

    return PlainProgress(write)
