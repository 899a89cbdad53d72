"""The worker pool of column scans: processes, or threads for work that releases the GIL."""

from __future__ import annotations

import threading

import pytest

from harness.parallel_scan import results_of, worker_pool


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
