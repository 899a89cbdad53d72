"""A table read on every core: its key range split into parts, each part read and judged by
a worker process over its own read-only connection, the parts' results merged exactly.

The plan (:func:`plan_scan`) is made on the check's own connection: the key's
lowest and highest value (two index lookups), the table's size as the planner
knows it, and, with ``[scan] sample_rows``, the chance each row has of being
drawn. :func:`worker_pool` then runs one picklable task per part in a pool of
``jobs`` processes started fresh (``spawn``: nothing of the parent's
connections or threads is inherited); :func:`results_of` hands them back in key order,
so that examples name the same first rows whatever the number of workers; a key that may be
NULL adds one more part, the rows whose key is NULL (no range holds them); work that
releases the GIL (the native Fernet engine's) may run in ``jobs`` threads of this process
instead, in one interpreter's memory. Threads are stopped early: on the first part that fails,
or Ctrl-C, the parts not started are cancelled and the readers running stop at their next
:func:`stop_point` (between two ``COPY`` blocks), closing their connections; the part's own
error is raised, its range named (:func:`reading_part`). A
table smaller than :data:`PARALLEL_MIN_ROWS` is read in the check's own
process: starting interpreters would cost more than it saves.

What is merged exactly is the task's business: counts add up, examples are
taken in key order, and duplicate IVs and ciphertexts are counted over the
workers' written-out fingerprints together
(:func:`harness.column_scans.shared_across_spills`), bucket by bucket, the
buckets themselves shared out over the same pool.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from harness.column_scans import DUPLICATE_BUCKETS, DuplicateSpill, shared_across_spills
from harness.outcomes import ProbeError
from harness.policy import Policy
from harness.probes.database import DatabaseProbe
from harness.sampling import SampleNote

#: Below this many rows to read, a table is read in the check's own process.
PARALLEL_MIN_ROWS = 200_000
#: At most about this many rows in one part of a full read. Each part is one COPY that must
#: end within ``timeouts.command_s``: with one part per worker, a 20M-row table under load ran
#: past the default 300 s (measured, bench/README.md), so a table of any size is cut into
#: parts a worker reads in seconds (1M rows: ~20 s at the native engine's rate at load 15),
#: and the workers take the next part as they finish one.
PART_MAX_ROWS = 1_000_000
#: How the sample is drawn, in the words evidence uses.
SAMPLE_METHOD = ("TABLESAMPLE BERNOULLI: each row drawn independently with the same "
                 "probability, so every row is equally likely to be judged")

Result = TypeVar("Result")


@dataclass(frozen=True)
class ScanPlan:
    """How one table is read.

    Attributes:
        table: the table.
        parts: ``(lowest key, highest key)`` of each part, in key order; ``(None, None)``
            is the whole table (a key that is not an integer, or an empty table). A full read
            has at least one part per worker and about :data:`PART_MAX_ROWS` rows a part at most.
        jobs: workers (1: the check's own process); each takes the next part when it is done.
        sample_percent: the chance each row has of being read, in percent; None reads all.
        sample: the sample's description (rows drawn still to be counted), or None.
        null_keys: whether the key may be NULL (``pg_attribute.attnotnull`` false): the rows
            whose key is NULL are then one more part, read after the ranges (see :attr:`reads`).
    """

    table: str
    parts: tuple[tuple[int | None, int | None], ...]
    jobs: int
    sample_percent: float | None = None
    sample: SampleNote | None = None
    null_keys: bool = False

    @property
    def reads(self) -> tuple[tuple[int | None, int | None, bool], ...]:
        """Every part to read as ``(low, high, null_key)``: the key ranges, then, where the key
        may be NULL, ``(None, None, True)``: the rows whose key is NULL (sampled alike)."""
        ranges = tuple((low, high, False) for low, high in self.parts)
        return (*ranges, (None, None, True)) if self.null_keys else ranges

    def sampled(self, rows_sampled: int) -> SampleNote | None:
        """The sample's note with the rows actually drawn (None for a full read)."""
        if self.sample is None:
            return None
        return SampleNote(self.sample.table, self.sample.method, self.sample.percent,
                          self.sample.rows_in_table, self.sample.rows_counted, rows_sampled)


def scan_jobs(policy: Policy) -> int:
    """Worker processes the policy asks for (``[scan] jobs``; 0: one per CPU core)."""
    if policy.scan.jobs:
        return policy.scan.jobs
    # The cores this process may run on (a container's or taskset's limit), not the machine's.
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def plan_scan(db: DatabaseProbe, table: str, policy: Policy, *, key: str = "id") -> ScanPlan:
    """Split ``table`` by ``key`` into parts for the workers, sampled if the policy says so;
    a key that may be NULL reads its NULL rows as one more part (:attr:`ScanPlan.reads`)."""
    bounds = db.key_bounds(table, key)
    if bounds is None:
        # Every row in one part, those whose key is NULL included.
        return ScanPlan(table, ((None, None),), 1)
    low, high, null_keys = bounds
    keys = high - low + 1
    rows = db.planned_rows(table)
    percent: float | None = None
    sample: SampleNote | None = None
    wanted = policy.scan.sample_rows
    if wanted is not None:
        counted = rows is None or rows == 0
        if counted:
            # Never analysed: the exact count costs a scan of its own, once.
            rows = int(db.count_rows(table))
        assert rows is not None
        if wanted < rows:
            percent = 100.0 * wanted / rows
            sample = SampleNote(table, SAMPLE_METHOD, percent, rows, counted, 0)
    to_read = min(keys, rows if rows else keys) * (percent or 100.0) / 100.0
    jobs = scan_jobs(policy) if to_read >= PARALLEL_MIN_ROWS else 1
    jobs = max(1, min(jobs, keys))
    # A sampled part scans every page of the table whatever its key range (TABLESAMPLE
    # draws before the WHERE): more parts than workers would only add whole-table scans.
    wanted_parts = jobs if percent is not None else -(-int(to_read) // PART_MAX_ROWS)
    step = -(-keys // max(jobs, min(keys, wanted_parts)))
    parts = tuple((start, min(start + step - 1, high)) for start in range(low, high + 1, step))
    return ScanPlan(table, parts, min(jobs, len(parts)), percent, sample, null_keys)


Submit = Callable[..., "Future[Any]"]


class ScanStopped(Exception):
    """Raised at a :func:`stop_point` of a reader whose pool is stopping (another part failed,
    or Ctrl-C): never the error a scan reports, which is the part's that failed."""


#: The stop event of the pool whose task this thread runs (threads of :func:`worker_pool`).
_running = threading.local()


def stop_point() -> None:
    """Where a reader run by :func:`worker_pool` may stop: between two blocks it reads.

    Raises:
        ScanStopped: the pool is stopping; the reader's ``with`` blocks then close its
            connection. Never outside a pool's thread (a process's or the caller's own read
            runs to its end or dies with its process).
    """
    stop: threading.Event | None = getattr(_running, "stop", None)
    if stop is not None and stop.is_set():
        raise ScanStopped("the scan stopped: another part failed, or it was interrupted")


def part_name(table: str, low: int | None, high: int | None, null_key: bool = False) -> str:
    """A part of a table's key range as messages name it (``null_key``: its rows whose key is
    NULL)."""
    if null_key:
        return f"{table} rows with id NULL"
    if low is None and high is None:
        return f"{table} (every row)"
    return f"{table} rows with id {'' if low is None else low}..{'' if high is None else high}"


@contextmanager
def reading_part(table: str, low: int | None, high: int | None,
                 null_key: bool = False) -> Iterator[None]:
    """Around one part's read: a ProbeError of it is raised again with the part named at its
    end (``cannot read t.c: ... (t rows with id 1..9)``)."""
    try:
        yield
    except ProbeError as exc:
        raise ProbeError(f"{exc} ({part_name(table, low, high, null_key)})") from None


@contextmanager
def worker_pool(jobs: int, *, threads: bool = False) -> Iterator[Submit]:
    """A ``submit(function, *args)`` that runs in one of ``jobs`` fresh worker processes
    (in this process for one job; in ``jobs`` threads of this process with ``threads``, for
    work that releases the GIL, such as the native Fernet engine's); use :func:`results_of`
    to wait for the futures.

    When the ``with`` body raises (a part's error from :func:`results_of`, or Ctrl-C), tasks
    not yet started are cancelled; threads running stop at their next :func:`stop_point`
    and are waited for, so that no reader outlives the pool.

    Raises:
        ProbeError: a worker process ended without its result (killed, out of memory).
    """
    if jobs <= 1 or (not threads and multiprocessing.current_process().daemon):
        # A daemonic process (a multiprocessing.Pool's worker) may not start processes.
        yield _in_process()
        return
    if threads:
        # One interpreter's memory, whatever the number of workers; no interpreter started.
        with _stoppable_threads(jobs) as submit:
            yield submit
        return
    context = multiprocessing.get_context("spawn")
    try:
        with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
            try:
                yield pool.submit
            except BaseException:
                pool.shutdown(cancel_futures=True)
                raise
    except BrokenProcessPool:
        raise ProbeError(f"a column scan's worker process ended without its result "
                         f"({jobs} workers); nothing was judged") from None


@contextmanager
def _stoppable_threads(jobs: int) -> Iterator[Submit]:
    stop = threading.Event()

    def run(function: Callable[..., Any], *args: Any) -> Any:
        _running.stop = stop
        try:
            return function(*args)
        finally:
            _running.stop = None

    pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="votriz-scan")
    try:
        yield lambda function, *args: pool.submit(run, function, *args)
    except BaseException:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def results_of(futures: Sequence[Future[Result]]) -> list[Result]:
    """The futures' results in their order; a worker's exception (a ProbeError with its
    message) is raised as the worker raised it, as soon as any part fails (the first in
    order of those failed by then), not after the parts before it end."""
    done, _ = wait(futures, return_when=FIRST_EXCEPTION)
    failed = [future for future in futures if future in done and not future.cancelled()
              and future.exception() is not None]
    # A part stopped because another failed is never the error to report.
    failed.sort(key=lambda future: isinstance(future.exception(), ScanStopped))
    if failed:
        failed[0].result()
    return [future.result() for future in futures]


def _in_process() -> Submit:
    """A ``submit`` that runs each task at once, here, and hands it over as a pool's future
    would; once a task has failed, the later ones are not run (cancelled), as a pool cancels
    the tasks not yet started: a failing read (e.g. one giving way to a queued schema change)
    ends the scan at once, not once per part still to come."""
    failed = False

    def submit(function: Callable[..., Any], *args: Any) -> Future[Any]:
        nonlocal failed
        future: Future[Any] = Future()
        if failed:
            future.cancel()
            future.set_running_or_notify_cancel()
            return future
        try:
            future.set_result(function(*args))
        except Exception as exc:  # Handed over as a pool's future would hand it.
            failed = True
            future.set_exception(exc)
        return future

    return submit


def shared_cells(spills: Sequence[DuplicateSpill], submit: Submit,
                 jobs: int) -> tuple[int, int, int]:
    """(cells sharing an IV, distinct shared IVs, cells sharing a ciphertext) over every
    worker's spills, the buckets shared out over ``submit`` (a pool's) in ``jobs`` slices."""
    step = -(-DUPLICATE_BUCKETS // max(1, jobs))
    futures = [submit(shared_across_spills, spills, range(start, min(start + step,
                                                                     DUPLICATE_BUCKETS)))
               for start in range(0, DUPLICATE_BUCKETS, step)]
    totals = [0, 0, 0]
    for counts in results_of(futures):
        totals = [a + b for a, b in zip(totals, counts, strict=True)]
    return totals[0], totals[1], totals[2]
