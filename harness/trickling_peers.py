"""The run's memory of exchanges that trickled, so that one slow answer costs one deadline, not one per check.

A peer that sends a byte now and then holds every exchange with it for its whole
deadline (:mod:`harness.deadline`): an edge that trickles made each transit check
that asks it wait ``timeouts.request_s`` again. As :data:`harness.health.RUN_OUTAGES`
remembers an outage, :data:`RUN_TRICKLERS` remembers the first exchange whose
deadline cut a peer that *had* sent something (a silent peer may be restarting and
is asked again).

What is remembered is the exchange that overran, not the whole peer: the peer's
address (``host:port``) *and* what was asked of it (``the TLS handshake``,
``GET /slow``). A slow body on one sampled path says nothing about the TLS
handshake or about ``GET /`` on the same port, so it must not refuse them: were it
to, a check's verdict would depend on which check asked first. Later asks of the
same exchange in the same run end at once with :meth:`Overrun.not_asked`, a
sentence naming the exchange, the peer, its first overrun and the deadline in
seconds, which probes raise as a :class:`~harness.outcomes.ProbeError` (an ERROR,
never a verdict on the promise). The memory is emptied when a run's state is made
(:class:`harness.run_state.RunState`): a second run in one process asks again.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass, field
from typing import Protocol

#: What an exchange asked when it is not known (a caller that names only the peer).
ANY_EXCHANGE = ""
#: The TLS handshake with a peer, as the memory names it.
TLS_HANDSHAKE = "the TLS handshake"


def http_get(path: str, scheme: str = "https") -> str:
    """One request, as the memory names it: ``GET /slow`` over HTTPS, ``GET /slow over plain
    HTTP`` otherwise (the TLS scan's ``GET /`` and the samples' are the same exchange)."""
    return f"GET {path}" if scheme == "https" else f"GET {path} over plain HTTP"


@dataclass(frozen=True)
class Overrun:
    """The first exchange with a peer that its whole-exchange deadline ended while it trickled.

    Attributes:
        address: ``host:port`` of the peer.
        peer: the peer in words and address (``the edge 127.0.0.1:8443``).
        sentence: what the peer did, from the exchange's record (bytes, seconds, the deadline).
        seconds: the deadline that was overrun, in seconds.
        key: the policy key of that deadline (``timeouts.request_s``).
        at: when the deadline cut it (UTC).
        asked: what was asked of the peer (``GET /slow``, ``the TLS handshake``); with
            ``address``, the memory's key.
    """

    address: str
    peer: str
    sentence: str
    seconds: float
    key: str
    at: dt.datetime
    asked: str = ANY_EXCHANGE

    def not_asked(self) -> str:
        """Why a later ask of the same exchange was not attempted."""
        what = f"{self.asked}: " if self.asked else ""
        return (f"not asked: earlier in this run (at {self.at.astimezone(dt.UTC):%H:%M:%S} UTC) "
                f"{what}{self.sentence}; asking {self.peer} again would take the same {self.seconds:g} s")


class PeerKnownToTrickle(Exception):
    """An exchange was not attempted because the same exchange trickled earlier in the run.

    Attributes:
        overrun: the first overrun of that exchange.
    """

    def __init__(self, overrun: Overrun) -> None:
        super().__init__(overrun.not_asked())
        self.overrun = overrun


class _ExchangeDeadline(Protocol):
    # Read-only (a frozen dataclass's fields): properties.
    @property
    def seconds(self) -> float: ...

    @property
    def key(self) -> str: ...


class CutExchange(Protocol):
    """What the memory reads of an exchange its deadline cut (:class:`harness.deadline.Exchange`)."""

    peer: str
    received: int

    @property
    def deadline(self) -> _ExchangeDeadline: ...

    def expired_sentence(self) -> str: ...


@dataclass
class TricklerMemory:
    """The first overrun of each exchange during this run.

    Attributes:
        first: ``(host:port, asked)`` -> the first overrun seen there.
    """

    first: dict[tuple[str, str], Overrun] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, overrun: Overrun) -> None:
        """Remember ``overrun`` unless the same exchange already overran."""
        with self._lock:
            self.first.setdefault((overrun.address, overrun.asked), overrun)

    def remember(self, address: str, asked: str, exchange: CutExchange, *,
                 at: dt.datetime | None = None) -> None:
        """Remember that the deadline cut ``exchange`` (``asked`` of the peer at ``address``),
        if the peer had sent something: a silent peer may be restarting and is asked again."""
        if exchange.received:
            self.record(Overrun(address, exchange.peer, exchange.expired_sentence(),
                                exchange.deadline.seconds, exchange.deadline.key,
                                at or dt.datetime.now(dt.UTC), asked))

    def seen(self, address: str, asked: str = ANY_EXCHANGE) -> Overrun | None:
        """The first overrun of ``asked`` of the peer at ``address``, or None."""
        with self._lock:
            return self.first.get((address, asked))

    def refuse(self, address: str, *asked: str) -> None:
        """Raise when any of the exchanges ``asked`` of the peer at ``address`` (none named: the
        peer as a whole, :data:`ANY_EXCHANGE`) trickled earlier in the run.

        Raises:
            PeerKnownToTrickle: with :meth:`Overrun.not_asked` as its message.
        """
        for what in asked or (ANY_EXCHANGE,):
            overrun = self.seen(address, what)
            if overrun is not None:
                raise PeerKnownToTrickle(overrun)

    def forget(self, address: str | None = None) -> None:
        """Forget every exchange of one peer, or every one (a new run)."""
        with self._lock:
            if address is None:
                self.first.clear()
            else:
                for known in [known for known in self.first if known[0] == address]:
                    del self.first[known]


RUN_TRICKLERS = TricklerMemory()
