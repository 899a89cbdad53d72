"""The run's memory of trickling exchanges: the first overrun of each (address, exchange) is kept and
refuses later asks of that exchange only; a new run's state starts with none."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.deadline import Deadline, Exchange
from harness.inputs import load_inputs
from harness.run_state import RunState
from harness.trickling_peers import (
    RUN_TRICKLERS,
    TLS_HANDSHAKE,
    Overrun,
    PeerKnownToTrickle,
    TricklerMemory,
    http_get,
)

AT = dt.datetime(2026, 12, 7, 12, 0, 3, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def forget() -> Iterator[None]:
    RUN_TRICKLERS.forget()
    yield
    RUN_TRICKLERS.forget()


def _overrun(address: str, sentence: str, asked: str = "") -> Overrun:
    return Overrun(address, f"the edge {address}", sentence, 2.0, "timeouts.request_s", AT, asked)


def test_the_first_overrun_of_a_peer_is_kept_and_refuses_later_asks() -> None:
    memory = TricklerMemory()
    memory.record(_overrun("127.0.0.1:8443", "the edge 127.0.0.1:8443 sent 7 bytes in 2.0 s and did not finish "
                                             "its answer within the policy's 2 s (timeouts.request_s)"))
    memory.record(_overrun("127.0.0.1:8443", "a later overrun"))
    memory.refuse("127.0.0.1:8080")  # another port is another peer
    with pytest.raises(PeerKnownToTrickle) as refused:
        memory.refuse("127.0.0.1:8443")
    assert str(refused.value) == (
        "not asked: earlier in this run (at 12:00:03 UTC) the edge 127.0.0.1:8443 sent 7 bytes in 2.0 s and did "
        "not finish its answer within the policy's 2 s (timeouts.request_s); asking the edge 127.0.0.1:8443 "
        "again would take the same 2 s")
    memory.forget("127.0.0.1:8443")
    assert memory.seen("127.0.0.1:8443") is None


def test_an_overrun_refuses_only_the_exchange_that_overran() -> None:
    # Given GET /slow on an edge port was cut while its body trickled (review finding 1)
    memory = TricklerMemory()
    slow = Exchange("the edge 127.0.0.1:8443", Deadline(3.0, "timeouts.request_s", started=0.0), received=345,
                    expired_at_s=3.0)
    memory.remember("127.0.0.1:8443", http_get("/slow"), slow, at=AT)
    # When the TLS scan (its handshake and GET /) and the plain HTTP GET /slow ask the same port
    memory.refuse("127.0.0.1:8443", TLS_HANDSHAKE, http_get("/"))
    memory.refuse("127.0.0.1:8443", http_get("/slow", "http"))
    # Then they are asked; only GET /slow over HTTPS is refused, naming the exchange
    with pytest.raises(PeerKnownToTrickle) as refused:
        memory.refuse("127.0.0.1:8443", TLS_HANDSHAKE, http_get("/slow"))
    assert str(refused.value) == (
        "not asked: earlier in this run (at 12:00:03 UTC) GET /slow: the edge 127.0.0.1:8443 sent 345 bytes "
        "in 3.0 s and did not finish its answer within the policy's 3 s (timeouts.request_s); asking the edge "
        "127.0.0.1:8443 again would take the same 3 s")


def test_a_silent_exchange_is_not_remembered_and_forgetting_a_peer_forgets_each_of_its_exchanges() -> None:
    memory = TricklerMemory()
    silent = Exchange("the edge 127.0.0.1:8443", Deadline(3.0, "timeouts.request_s", started=0.0))
    memory.remember("127.0.0.1:8443", http_get("/"), silent, at=AT)
    assert memory.seen("127.0.0.1:8443", http_get("/")) is None
    for asked in (TLS_HANDSHAKE, http_get("/")):
        memory.record(_overrun("127.0.0.1:8443", "it trickled", asked))
    memory.record(_overrun("127.0.0.1:8080", "it trickled", http_get("/", "http")))
    memory.forget("127.0.0.1:8443")
    assert set(memory.first) == {("127.0.0.1:8080", "GET / over plain HTTP")}


def test_a_new_run_state_starts_with_no_memory_of_slow_peers(tmp_path: Path) -> None:
    # Given an earlier run in this process remembered a trickling exchange (review finding 2)
    RUN_TRICKLERS.record(_overrun("127.0.0.1:18443", "it trickled", http_get("/slow")))
    # When the next run's state is made, as the plugin makes it when a run starts
    target = tmp_path / "target.toml"
    target.write_text('name = "edge"\n[edge]\nhost = "votriz.test"\n')
    RunState(inputs=load_inputs(target), report_dir=tmp_path / "report")
    # Then nothing of the earlier run refuses an exchange of this one
    assert RUN_TRICKLERS.first == {}
    RUN_TRICKLERS.refuse("127.0.0.1:18443", http_get("/slow"))
