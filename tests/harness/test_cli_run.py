"""The reference service's take-down while the report is rendered (harness.cli_run)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from harness import cli_run


class FakeStack:
    """A backend whose ``down`` records the thread it ran in, and can fail."""

    name = "fake"

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.down_in: list[str] = []

    def down(self, state_dir: Path) -> None:
        self.down_in.append(threading.current_thread().name)
        if self.error is not None:
            raise self.error


def test_an_early_take_down_runs_beside_the_run_and_says_its_line_when_joined(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a take-down started early, in a thread of its own
    stack = FakeStack()
    early = cli_run._EarlyTakeDown(lambda: cli_run.take_down(stack, tmp_path))  # type: ignore[arg-type]
    early.start()
    early.start()  # released twice: one take-down
    # When the run joins it
    early.finish()
    # Then it ran once, not in the main thread, and its one line is said only now
    assert stack.down_in == ["votriz-take-down"]
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith("votriz-audit: taking the reference service down (fake): done after ")


def test_an_early_take_down_that_failed_raises_where_the_run_joins_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stack = FakeStack(RuntimeError("engine gone"))
    early = cli_run._EarlyTakeDown(lambda: cli_run.take_down(stack, tmp_path))  # type: ignore[arg-type]
    early.start()
    with pytest.raises(RuntimeError, match="engine gone"):
        early.finish()
    assert "taking the reference service down (fake): stopped after " in capsys.readouterr().out


def test_take_down_outside_the_early_thread_draws_its_own_progress(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stack = FakeStack()
    cli_run.take_down(stack, tmp_path)  # type: ignore[arg-type]
    assert stack.down_in == [threading.current_thread().name]
    assert "taking the reference service down (fake): done after " in capsys.readouterr().out
