"""The worker pool of column scans: processes, or threads for work that releases the GIL."""

from __future__ import annotations

import signal
import threading
import time
from concurrent.futures import Future

import pytest

from harness.outcomes import ProbeError
from harness.parallel_scan import (
    PART_MAX_ROWS,
    ScanPlan,
    ScanStopped,
    part_name,
    plan_scan,
    reading_part,
    results_of,
    stop_point,
    worker_pool,
)
from harness.policy import load_policy


def _where(value: int) -> tuple[int, str]:
    return value * value, threading.current_thread().name


def _refuse(value: int) -> int:
    raise ValueError(f"part {value} refused")


def test_a_thread_pool_runs_each_task_in_a_worker_thread_and_hands_results_back_in_order() -> None:
    with worker_pool(3, threads=True) as submit:
        answers = results_of([submit(_where, n) for n in range(8)])
    assert [square for square, _ in answers] == [n * n for n in range(8)]
    assert {name.split("_")[0] for _, name in answers} == {"votriz-scan"}


def test_a_thread_pool_raises_a_tasks_exception_as_it_was_raised() -> None:
    with pytest.raises(ValueError, match="part 2 refused"), worker_pool(2, threads=True) as submit:
        results_of([submit(_refuse, 2)])


def test_one_job_runs_in_the_callers_thread_whichever_kind_is_asked() -> None:
    for threads in (False, True):
        with worker_pool(1, threads=threads) as submit:
            assert results_of([submit(_where, 3)]) == [(9, threading.current_thread().name)]


def test_one_job_runs_no_task_after_one_has_failed() -> None:
    ran: list[int] = []

    def task(value: int) -> int:
        ran.append(value)
        return _refuse(value) if value == 1 else value

    with pytest.raises(ValueError, match="part 1 refused"), worker_pool(1) as submit:
        results_of([submit(task, n) for n in range(4)])
    assert ran == [0, 1]


# --- stopping early: one part fails, or Ctrl-C, while another part is still reading ----------

#: What a reader that is stopped may take to notice: well under the slow part's own time.
STOP_BOUND_S = 3.0


class SlowPart:
    """A reader of 200 blocks whose next block takes 50 ms (an Event never set, waited on
    with a block's time): 10 s in all unless stopped. Records its connection's closing."""

    def __init__(self) -> None:
        self.reading = threading.Event()
        self.never = threading.Event()
        self.blocks = 0
        self.closed = threading.Event()

    def __call__(self, part: int) -> int:
        try:
            self.reading.set()
            for _ in range(200):
                self.never.wait(0.05)
                self.blocks += 1
                stop_point()
            return part
        finally:
            self.closed.set()


def _scan_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("votriz-scan")]


def test_one_failing_part_stops_a_slow_part_and_its_error_names_the_range() -> None:
    slow = SlowPart()

    def failing(low: int, high: int) -> int:
        assert slow.reading.wait(5)
        with reading_part("channels", low, high):
            raise ProbeError("cannot read channels.access_token_enc: connection refused")

    # Given a pool of three threads: a slow part first in order, a part that fails, one queued
    start = time.monotonic()
    with pytest.raises(ProbeError) as raised, worker_pool(2, threads=True) as submit:
        futures = [submit(slow, 0), submit(failing, 100, 199), submit(slow, 2)]
        results_of(futures)
    elapsed = time.monotonic() - start
    # Then the part's own error is raised, naming its range, within a bound (not 10 s)
    assert str(raised.value) == ("cannot read channels.access_token_enc: connection refused "
                                 "(channels rows with id 100..199)")
    assert elapsed < STOP_BOUND_S, elapsed
    # And the slow reader stopped between two blocks and closed; the queued part never ran
    assert slow.closed.is_set() and slow.blocks < 200
    assert futures[2].cancelled()
    # And no thread of the pool outlives it
    assert _scan_threads() == []


def test_ctrl_c_stops_the_parts_still_reading() -> None:
    slow = SlowPart()
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    main = threading.main_thread().ident
    assert main == threading.get_ident()

    def interrupt() -> None:
        assert slow.reading.wait(5)
        signal.pthread_kill(main, signal.SIGINT)

    ctrl_c = threading.Thread(target=interrupt)
    start = time.monotonic()
    try:
        # Given two parts reading, and a Ctrl-C while the caller waits for their results
        with pytest.raises(KeyboardInterrupt), worker_pool(2, threads=True) as submit:
            futures = [submit(slow, 0), submit(slow, 1)]
            ctrl_c.start()
            results_of(futures)
    finally:
        signal.signal(signal.SIGINT, previous)
        ctrl_c.join()
    # Then the interrupt ends the scan within a bound, the readers stopped and closed
    assert time.monotonic() - start < STOP_BOUND_S
    assert slow.closed.is_set() and all(f.exception() is not None for f in futures)
    assert {type(f.exception()) for f in futures} == {ScanStopped}
    assert _scan_threads() == []


def test_a_part_stopped_because_another_failed_is_never_the_error_reported() -> None:
    first = Future[int]()
    first.set_exception(ScanStopped("stopped"))
    second = Future[int]()
    second.set_exception(ProbeError("cannot read users.password_hash (users rows with id 1..9)"))
    with pytest.raises(ProbeError, match=r"users rows with id 1\.\.9"):
        results_of([first, second])


def test_a_stop_point_outside_a_pools_thread_never_stops() -> None:
    def reader() -> int:
        stop_point()
        return 7

    stop_point()
    with worker_pool(1, threads=True) as submit:
        assert results_of([submit(reader)]) == [7]


def test_parts_are_named_by_their_key_range() -> None:
    assert part_name("users", 1, 9) == "users rows with id 1..9"
    assert part_name("users", None, None) == "users (every row)"
    with pytest.raises(ProbeError, match=r"^boom \(users rows with id 5\.\.\)$"), \
            reading_part("users", 5, None):
        raise ProbeError("boom")


def test_the_rows_whose_key_is_null_are_one_more_part_named_so() -> None:
    assert part_name("users", None, None, null_key=True) == "users rows with id NULL"
    with pytest.raises(ProbeError, match=r"^boom \(channels rows with id NULL\)$"), \
            reading_part("channels", None, None, True):
        raise ProbeError("boom")
    ranges = ((1, 5), (6, 9))
    assert ScanPlan("t", ranges, 2).reads == ((1, 5, False), (6, 9, False))
    assert ScanPlan("t", ranges, 2, null_keys=True).reads \
        == ((1, 5, False), (6, 9, False), (None, None, True))


class _Table:
    """What plan_scan asks of the database: the key's bounds and the planner's row count."""

    def __init__(self, low: int, high: int, rows: int) -> None:
        self.bounds, self.rows = (low, high, False), rows

    def key_bounds(self, table: str, key: str) -> tuple[int, int, bool]:
        return self.bounds

    def planned_rows(self, table: str) -> int:
        return self.rows

    def count_rows(self, table: str) -> int:
        return self.rows


@pytest.mark.parametrize(("rows", "jobs", "parts"), [
    (100_000, 2, 1),           # small: the check's own process
    (1_500_000, 2, 2),         # one part per worker
    (20_000_000, 2, 20),       # large: parts of at most PART_MAX_ROWS, workers take the next
    (20_000_000, 32, 32),      # never fewer parts than workers
])
def test_a_full_read_is_cut_into_parts_no_larger_than_part_max_rows(rows: int, jobs: int, parts: int) -> None:
    # Each part is one COPY that must end within timeouts.command_s: a 20M-row table read in
    # 2 parts of 10M ran past the default 300 s under load.
    policy = load_policy().with_scan(jobs=jobs)
    plan = plan_scan(_Table(1, rows, rows), "channels", policy)  # type: ignore[arg-type]
    assert len(plan.parts) == parts and plan.jobs == min(jobs, parts)
    assert all(high - low + 1 <= PART_MAX_ROWS for low, high in plan.parts)
    # The parts cover every key once, in order.
    assert plan.parts[0][0] == 1 and plan.parts[-1][1] == rows
    assert all(a[1] + 1 == b[0] for a, b in zip(plan.parts, plan.parts[1:], strict=False))


def test_a_sampled_read_keeps_one_part_per_worker() -> None:
    # TABLESAMPLE scans every page whatever the key range: more parts would add whole-table scans.
    policy = load_policy().with_scan(jobs=2, sample_rows=5_000_000)
    plan = plan_scan(_Table(1, 50_000_000, 50_000_000), "channels", policy)  # type: ignore[arg-type]
    assert len(plan.parts) == 2 and plan.sample_percent == pytest.approx(10.0)
