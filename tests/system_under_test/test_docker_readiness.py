"""Steps of the Docker stand-up run together (system_under_test.docker.readiness.together)."""

from __future__ import annotations

import threading
import time

import pytest

from system_under_test.common.host import StackError
from system_under_test.docker import readiness


class Running:
    """A container that keeps running (what ``wait`` asks of it)."""

    name = "votriz-test-db"
    status = "running"

    def reload(self) -> None:
        pass

    def logs(self, tail: int = 5) -> bytes:
        return b"still starting\n"


def test_steps_run_at_the_same_time_and_their_results_keep_their_order() -> None:
    barrier = threading.Barrier(3, timeout=5)

    def step(value: int):
        def run(_stop: threading.Event) -> int:
            barrier.wait()  # would time out if the steps ran one after another
            return value
        return run

    assert readiness.together([step(1), step(2), step(3)]) == [1, 2, 3]


def test_the_first_failure_stops_the_other_waits_and_is_the_error_raised() -> None:
    # Given a wait that would last its whole 60 s deadline and a step that fails at once
    def never_ready(stop: threading.Event) -> None:
        readiness.wait(lambda: False, "db (postgres)", Running(), stop=stop)

    def broken(_stop: threading.Event) -> None:
        time.sleep(0.2)
        raise StackError("mailbox (dovecot) did not start: simulated")

    started = time.monotonic()
    # When they run together, Then the failure is raised (not the abandoned wait) within a poll or two
    with pytest.raises(StackError, match="dovecot") as raised:
        readiness.together([never_ready, broken])
    assert not isinstance(raised.value, readiness.Abandoned)
    assert time.monotonic() - started < 5


def test_ports_open_asks_every_port_from_this_host() -> None:
    import socket

    # Given one port that listens and one that (most likely) does not: the listener's, closed
    with socket.create_server(("127.0.0.1", 0)) as listening, socket.create_server(("127.0.0.1", 0)) as gone:
        closed = gone.getsockname()[1]
        gone.close()
        port = listening.getsockname()[1]
        # Then only a set of listening ports is open
        assert readiness.ports_open("127.0.0.1", [port])
        assert not readiness.ports_open("127.0.0.1", [port, closed])
