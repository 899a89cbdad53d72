"""The run's memory of trickling peers: the first overrun of each address is kept and refuses later asks."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest

from harness.deadline import Deadline, Exchange
from harness.trickling_peers import RUN_TRICKLERS, Overrun, PeerKnownToTrickle, TricklerMemory

AT = dt.datetime(2026, 12, 7, 12, 0, 3, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def forget() -> Iterator[None]:
    RUN_TRICKLERS.forget()
    yield
    RUN_TRICKLERS.forget()


def _overrun(address: str, sentence: str) -> Overrun:
    return Overrun(address, f"the edge {address}", sentence, 2.0, "timeouts.request_s", AT)


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


def test_an_exchange_cut_after_its_peer_sent_something_is_remembered_and_a_silent_one_is_not() -> None:
    trickled = Exchange("the edge 127.0.0.1:1", Deadline(2.0, "timeouts.request_s", started=0.0), received=3,
                        address="127.0.0.1:1")
    silent = Exchange("the edge 127.0.0.1:2", Deadline(2.0, "timeouts.request_s", started=0.0),
                      address="127.0.0.1:2")
    unnamed = Exchange("a peer", Deadline(2.0, "timeouts.request_s", started=0.0), received=3)
    for exchange in (trickled, silent, unnamed):
        exchange.cut()
    remembered = RUN_TRICKLERS.seen("127.0.0.1:1")
    assert remembered is not None and remembered.seconds == 2.0 and remembered.key == "timeouts.request_s"
    assert remembered.sentence.startswith("the edge 127.0.0.1:1 sent 3 bytes in ")
    assert RUN_TRICKLERS.seen("127.0.0.1:2") is None and set(RUN_TRICKLERS.first) == {"127.0.0.1:1"}
