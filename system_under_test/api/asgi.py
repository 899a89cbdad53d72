"""ASGI entry point for gunicorn: ``system_under_test.api.asgi:app``.

Gunicorn runs with ``--preload``: its master imports this module, and with it
the application's code, once. Each worker it forks then builds its own
application, reading the keys from the HSM, before it serves
(``GracefulUvicornWorker.load_wsgi`` calls :meth:`WorkerApplication.build`; a
failure there is a worker boot error, which stops gunicorn). So every worker
holds the keys of the moment it started, as without ``--preload``, but a new
worker is ready in about 0.1 s instead of importing everything again (0.8 s on
two idle cores, seconds under load), and a rolling restart (``ops.workers``) is
that much shorter. Nothing here reads a key or opens a connection in the master.
"""

from __future__ import annotations

import os
from typing import Any

from starlette.types import Receive, Scope, Send

from system_under_test.api.app import create_app
from system_under_test.api.config import load_config


class WorkerApplication:
    """The API, built in the process that serves it (a gunicorn worker, after the fork)."""

    def __init__(self) -> None:
        self._app: Any = None

    def build(self) -> None:
        """Read the configuration and the keys and make the application (once)."""
        if self._app is None:
            self._app = create_app(load_config(os.environ["VOTRIZ_CONFIG"]))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Under another server (``uvicorn system_under_test.api.asgi:app``), on first use.
        self.build()
        await self._app(scope, receive, send)


app = WorkerApplication()
