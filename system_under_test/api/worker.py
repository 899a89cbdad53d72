"""The gunicorn worker class of the API: uvicorn's, with a shutdown that drops no request.

Gunicorn rolls its workers on HUP (key rotations do that): it forks new
workers and sends TERM to the old ones, which stop accepting and finish what
they serve. Uvicorn's own shutdown closes at once every connection that has
not yet delivered a complete request head, so a connection the old worker
accepted a moment before (its request already written by nginx, not yet read)
is closed with the request unread: the kernel resets it, nginx logs
``recv() failed (104: Connection reset by peer) while reading response header
from upstream`` and answers 502, because it does not replay a request it has
already sent on a fresh connection (nor a POST on any).

This worker stops accepting first, then waits (at most ``FRESH_CONNECTION_GRACE_S``)
until every connection it already accepted has delivered its request head, and
only then runs uvicorn's shutdown, which lets those requests finish (within
gunicorn's ``--graceful-timeout``) and answers them with ``Connection: close``.

A connection kept alive after its answer is another matter: the leaving worker
closes it at once, and a client that has just written its next request into it
gets a reset (seen with strace: 7-9 of ~3,500 requests over 40 rolls for a
client on the API's socket with keep-alive). No server can close an idle
connection without that race, so the API's clients do not keep connections:
nginx sends ``Connection: close`` upstream (``local.nginx``), as do the tests
that load the API's socket directly during rolls.

Use ``-k system_under_test.api.worker.GracefulUvicornWorker``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
import time

from gunicorn.arbiter import Arbiter
from uvicorn.server import Server
from uvicorn_worker import UvicornWorker

# How long an accepted connection may take to deliver its request head once
# the worker is leaving. nginx writes the request right after connecting, so
# this is only reached under heavy load (or by a client that connects and
# says nothing, which the wait must not keep forever).
FRESH_CONNECTION_GRACE_S = 2.0
POLL_S = 0.01

log = logging.getLogger("uvicorn.error")


def _fresh(connection: object) -> bool:
    """A connection that has not delivered a complete request head yet (no request cycle)."""
    return getattr(connection, "cycle", None) is None


class GracefulServer(Server):
    """uvicorn's server whose shutdown does not reset connections accepted just before."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Stop accepting (what uvicorn's shutdown does first; doing it twice is harmless).
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        started = time.monotonic()
        fresh = sum(1 for c in self.server_state.connections if _fresh(c))
        while (fresh and time.monotonic() - started < FRESH_CONNECTION_GRACE_S
               and not self.force_exit):
            await asyncio.sleep(POLL_S)
            fresh = sum(1 for c in self.server_state.connections if _fresh(c))
        waited = time.monotonic() - started
        if waited >= POLL_S:
            log.info("Stopped accepting; waited %.0f ms for just-accepted connections to send "
                     "their request (%d still silent)", waited * 1000, fresh)
        await super().shutdown(sockets=None)


class GracefulUvicornWorker(UvicornWorker):
    """``uvicorn_worker.UvicornWorker`` serving with ``GracefulServer``."""

    def load_wsgi(self) -> None:
        """Take the (preloaded) application and let it read its keys, in this worker.

        Runs in the forked worker before it serves. An application with a
        ``build()`` (``system_under_test.api.asgi``) builds itself here, so a
        failure (no HSM, a wrong PIN) is a worker boot error that stops gunicorn,
        as an import error is, not a worker serving without keys.
        """
        super().load_wsgi()
        build = getattr(self.wsgi, "build", None)
        if callable(build):
            build()

    async def _serve(self) -> None:
        self.config.app = self.wsgi
        server = GracefulServer(config=self.config)
        self._install_sigquit_handler()
        await server.serve(sockets=self.sockets)
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)
