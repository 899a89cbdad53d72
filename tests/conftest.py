"""Shared fixtures: real local stacks of the reference service.

``clean_stack`` is one fault-free stack for the whole session (started on
first use, torn down at the end); ``stack_factory`` starts a stack with the
faults a test asks for and tears it down when the ``with`` block ends. Each
stack lives in its own state directory under /tmp (``sut-stack-*``), which
the unprivileged service user can reach, unlike pytest's private tmp tree.
Tests that use them are marked ``@pytest.mark.integration``.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from system_under_test.local import StackInfo, down, up


def new_state_dir() -> Path:
    """A fresh, empty state directory under /tmp."""
    return Path(tempfile.mkdtemp(prefix="sut-stack-", dir="/tmp"))


@contextlib.contextmanager
def running_stack(faults: tuple[str, ...] = ()) -> Iterator[StackInfo]:
    """A stack with ``faults`` for the duration of the block; always torn down."""
    state_dir = new_state_dir()
    try:
        yield up(state_dir, faults)
    finally:
        down(state_dir)


@pytest.fixture(scope="session")
def clean_stack() -> Iterator[StackInfo]:
    """One clean stack shared by every test of the session."""
    with running_stack() as info:
        yield info


StackFactory = Callable[..., AbstractContextManager[StackInfo]]


@pytest.fixture
def stack_factory() -> StackFactory:
    """``with stack_factory("hsts-missing", ...) as info:`` starts a stack with those faults."""

    def start(*faults: str) -> AbstractContextManager[StackInfo]:
        return running_stack(tuple(faults))

    return start
