"""The run's memory of peers that trickle, so that one slow peer costs one deadline, not one per check.

A peer that sends a byte now and then holds every exchange with it for its whole
deadline (:mod:`harness.deadline`): an edge that trickles made each transit check
that asks it wait ``timeouts.request_s`` again. As :data:`harness.health.RUN_OUTAGES`
remembers an outage, :data:`RUN_TRICKLERS` remembers the first exchange whose
deadline cut a peer that *had* sent something (a silent peer may be restarting and
is asked again). Later exchanges with the same address (``host:port``) in the same
process (the run) end at once with :meth:`Overrun.not_asked`, a sentence naming
the peer, its first overrun and the deadline in seconds, which probes raise as a
:class:`~harness.outcomes.ProbeError` (an ERROR, never a verdict on the promise).
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Overrun:
    """The first exchange with a peer that its whole-exchange deadline ended while it trickled.

    Attributes:
        address: ``host:port`` of the peer, the memory's key.
        peer: the peer in words and address (``the edge 127.0.0.1:8443``).
        sentence: what the peer did, from the exchange's record (bytes, seconds, the deadline).
        seconds: the deadline that was overrun, in seconds.
        key: the policy key of that deadline (``timeouts.request_s``).
        at: when the deadline cut it (UTC).
    """

    address: str
    peer: str
    sentence: str
    seconds: float
    key: str
    at: dt.datetime

    def not_asked(self) -> str:
        """Why a later exchange with this peer was not attempted."""
        return (f"not asked: earlier in this run (at {self.at.astimezone(dt.UTC):%H:%M:%S} UTC) "
                f"{self.sentence}; asking {self.peer} again would take the same {self.seconds:g} s")


class PeerKnownToTrickle(Exception):
    """An exchange was not attempted because its peer trickled earlier in the run.

    Attributes:
        overrun: the first overrun of that peer.
    """

    def __init__(self, overrun: Overrun) -> None:
        super().__init__(overrun.not_asked())
        self.overrun = overrun


@dataclass
class TricklerMemory:
    """The first overrun of each peer during this process (the run).

    Attributes:
        first: ``host:port`` -> the first overrun seen there.
    """

    first: dict[str, Overrun] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, overrun: Overrun) -> None:
        """Remember ``overrun`` unless its peer already overran."""
        with self._lock:
            self.first.setdefault(overrun.address, overrun)

    def seen(self, address: str) -> Overrun | None:
        with self._lock:
            return self.first.get(address) if self.first else None

    def refuse(self, address: str) -> None:
        """Raise when the peer at ``address`` trickled earlier in the run.

        Raises:
            PeerKnownToTrickle: with :meth:`Overrun.not_asked` as its message.
        """
        overrun = self.seen(address)
        if overrun is not None:
            raise PeerKnownToTrickle(overrun)

    def forget(self, address: str | None = None) -> None:
        """Forget one peer (or every one): for tests."""
        with self._lock:
            if address is None:
                self.first.clear()
            else:
                self.first.pop(address, None)


RUN_TRICKLERS = TricklerMemory()
