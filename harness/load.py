"""A steady, honest load generator: N threads calling the service until told to stop.

Honest means every call started is counted, once: a call that fails to reach
the service (a ProbeError, an HTTP client error, a socket error), times out, or
is still in flight when the load stops is a failure, never dropped. A call
that raises anything else has found a defect in the harness's own code: it is
not a failed request of the service, and the report lists it apart
(``defects``) so the check can end ERROR instead of blaming the system.
The report keeps every attempt (operation, start, duration, status, error
kind), phase markers set while the load ran, and derives from them a timeline
of fixed buckets (requests, errors, p50/p99 latency) and totals per window.

The callable given to :class:`SteadyLoad` does the request and says whether it
succeeded; the generator does the timing, so a slow callable cannot
misreport its own latency.
"""

from __future__ import annotations

import math
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from harness.outcomes import ProbeError

# What a call may raise when the service fails it: the API probe's error, an
# HTTP client error, a socket error. Anything else is the harness's own defect.
SERVICE_FAILURES: tuple[type[Exception], ...] = (ProbeError, httpx.HTTPError, OSError)


@dataclass(frozen=True)
class LoadCall:
    """What one call did, as reported by the caller's function.

    Attributes:
        op: a short name of the operation (``sync``, ``write``).
        ok: whether the answer was the expected one.
        status: the HTTP status, when there was an answer.
        error: the failure's kind when not ok ('' when ok), never a secret.
    """

    op: str
    ok: bool
    status: int | None = None
    error: str = ""


@dataclass(frozen=True)
class Attempt:
    """One call as the load generator measured it.

    Attributes:
        worker: index of the thread that made it.
        op: the operation.
        started_s: start, in seconds since the load started.
        duration_s: how long it took.
        ok: whether it succeeded.
        status: HTTP status, if any.
        error: failure kind ('' when ok).
    """

    worker: int
    op: str
    started_s: float
    duration_s: float
    ok: bool
    status: int | None
    error: str


@dataclass(frozen=True)
class Bucket:
    """One slice of the timeline.

    Attributes:
        start_s: start of the slice (seconds since the load started).
        requests: calls started in it.
        errors: of which failed.
        p50_ms, p99_ms: latency percentiles of its calls (None when empty).
        markers: phase markers set in it.
    """

    start_s: float
    requests: int
    errors: int
    p50_ms: float | None
    p99_ms: float | None
    markers: tuple[str, ...] = ()


@dataclass(frozen=True)
class WindowStats:
    """Totals over a time window.

    Attributes:
        requests, ok, errors: counts.
        connection_errors: failures with no HTTP answer at all.
        p50_ms, p99_ms, max_ms: latency of all calls in the window (None when empty).
        error_kinds: failure kind -> count.
    """

    requests: int
    ok: int
    errors: int
    connection_errors: int
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    error_kinds: dict[str, int] = field(default_factory=dict)

    def as_evidence(self) -> dict[str, Any]:
        return {"requests": self.requests, "ok": self.ok, "errors": self.errors,
                "connection_errors": self.connection_errors, "p50_ms": self.p50_ms,
                "p99_ms": self.p99_ms, "max_ms": self.max_ms, "error_kinds": self.error_kinds}


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) by the nearest-rank method; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass(frozen=True)
class LoadReport:
    """Everything one run of the load saw.

    Attributes:
        attempts: every call, in completion order.
        markers: (name, seconds since start) phase markers.
        duration_s: how long the load ran.
        concurrency: number of threads.
        defects: calls that raised something other than a service failure
            (``worker N: TypeName at file:line``); each stopped its thread.
    """

    attempts: tuple[Attempt, ...]
    markers: tuple[tuple[str, float], ...]
    duration_s: float
    concurrency: int
    defects: tuple[str, ...] = ()

    def marker(self, name: str) -> float | None:
        return next((at for marker, at in self.markers if marker == name), None)

    def phase(self, start: str, end: str) -> tuple[float, float]:
        """(start, end) seconds of the phase between two markers; a missing marker
        stands for the load's beginning or its end."""
        started, ended = self.marker(start), self.marker(end)
        return (started if started is not None else 0.0,
                ended if ended is not None else self.duration_s)

    def window(self, start_s: float = 0.0, end_s: float = math.inf) -> WindowStats:
        """Totals of the calls started in [start_s, end_s)."""
        chosen = [a for a in self.attempts if start_s <= a.started_s < end_s]
        return _stats(chosen)

    def totals(self) -> WindowStats:
        return _stats(list(self.attempts))

    def timeline(self, bucket_s: float = 0.5) -> list[Bucket]:
        """Fixed buckets from 0 to the end of the load, empty ones included."""
        count = max(1, math.ceil(self.duration_s / bucket_s))
        slots: list[list[Attempt]] = [[] for _ in range(count)]
        for attempt in self.attempts:
            slots[min(int(attempt.started_s / bucket_s), count - 1)].append(attempt)
        marks: list[list[str]] = [[] for _ in range(count)]
        for name, at in self.markers:
            marks[min(max(int(at / bucket_s), 0), count - 1)].append(name)
        buckets = []
        for index, chosen in enumerate(slots):
            latencies = [a.duration_s * 1000 for a in chosen]
            buckets.append(Bucket(round(index * bucket_s, 3), len(chosen),
                                  sum(1 for a in chosen if not a.ok),
                                  _round(percentile(latencies, 50)), _round(percentile(latencies, 99)),
                                  tuple(marks[index])))
        return buckets

    def failures(self, limit: int = 50) -> list[dict[str, Any]]:
        """The first failed calls (for evidence)."""
        failed = [a for a in self.attempts if not a.ok][:limit]
        return [{"t_s": round(a.started_s, 3), "op": a.op, "status": a.status, "error": a.error,
                 "ms": round(a.duration_s * 1000, 1)} for a in failed]


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _stats(chosen: list[Attempt]) -> WindowStats:
    latencies = [a.duration_s * 1000 for a in chosen]
    kinds: dict[str, int] = {}
    for attempt in chosen:
        if not attempt.ok:
            kinds[attempt.error or f"HTTP {attempt.status}"] = kinds.get(
                attempt.error or f"HTTP {attempt.status}", 0) + 1
    return WindowStats(
        requests=len(chosen), ok=sum(1 for a in chosen if a.ok),
        errors=sum(1 for a in chosen if not a.ok),
        connection_errors=sum(1 for a in chosen if not a.ok and a.status is None),
        p50_ms=_round(percentile(latencies, 50)), p99_ms=_round(percentile(latencies, 99)),
        max_ms=_round(max(latencies)) if latencies else None, error_kinds=kinds)


Call = Callable[[int, int], LoadCall]


class SteadyLoad:
    """``concurrency`` threads, each calling ``call(worker, iteration)`` back to back.

    Use :meth:`start`, :meth:`mark` while it runs, then :meth:`stop` for the report.

    Attributes:
        concurrency: number of threads.
        stop_timeout_s: how long :meth:`stop` waits for in-flight calls; a call
            still running after that is counted as a failure.
    """

    def __init__(self, call: Call, concurrency: int, *, stop_timeout_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.concurrency = concurrency
        self.stop_timeout_s = stop_timeout_s
        self._call = call
        self._clock = clock
        self._lock = threading.Lock()
        self._attempts: list[Attempt] = []
        self._markers: list[tuple[str, float]] = []
        self._defects: list[str] = []
        self._in_flight: dict[int, tuple[float, int]] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._t0 = 0.0

    def elapsed(self) -> float:
        return self._clock() - self._t0

    def start(self) -> None:
        self._t0 = self._clock()
        for worker in range(self.concurrency):
            thread = threading.Thread(target=self._run, args=(worker,), daemon=True,
                                      name=f"load-{worker}")
            self._threads.append(thread)
            thread.start()

    def mark(self, name: str) -> None:
        """Record a phase marker at the current time."""
        with self._lock:
            self._markers.append((name, self.elapsed()))

    def _run(self, worker: int) -> None:
        iteration = 0
        while not self._stop.is_set():
            started = self._clock()
            with self._lock:
                self._in_flight[worker] = (started, iteration)
            try:
                result = self._call(worker, iteration)
            except SERVICE_FAILURES as exc:
                result = LoadCall("?", False, None, type(exc).__name__)
            except Exception as exc:
                # A bug in the caller's code, not an answer of the service: report it
                # apart and stop this thread, which would only repeat it. The type and
                # place name it; the message is left out, as it might hold a secret.
                frame = traceback.extract_tb(exc.__traceback__)[-1]
                with self._lock:
                    del self._in_flight[worker]
                    self._defects.append(f"worker {worker}: {type(exc).__name__} at "
                                         f"{frame.filename}:{frame.lineno}")
                return
            ended = self._clock()
            with self._lock:
                del self._in_flight[worker]
                self._attempts.append(Attempt(worker, result.op, started - self._t0, ended - started,
                                              result.ok, result.status,
                                              "" if result.ok else (result.error or "unexpected answer")))
            iteration += 1

    def stop(self) -> LoadReport:
        """Stop the threads, wait for in-flight calls, and report every attempt."""
        self._stop.set()
        deadline = self._clock() + self.stop_timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - self._clock()))
        ended = self._clock()
        with self._lock:
            attempts = list(self._attempts)
            # A call that has not come back is a failure, never a silent omission.
            for worker, (started, _) in sorted(self._in_flight.items()):
                attempts.append(Attempt(worker, "?", started - self._t0, ended - started, False, None,
                                        "still in flight when the load stopped"))
            markers = tuple(self._markers)
            defects = tuple(self._defects)
        return LoadReport(tuple(attempts), markers, ended - self._t0, self.concurrency, defects)
