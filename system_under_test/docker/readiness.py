"""Whether a container of the stack is ready, seen from the Docker host.

:func:`wait` polls one readiness test, bounded, and turns a container that
stopped or never got ready into one ``StackError`` line naming its last log line.
:func:`together` runs steps that need nothing of each other (the containers'
starts, their readiness waits) at the same time, and stops the others at the
first failure.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from system_under_test.common.host import StackError
from system_under_test.common.pki import EDGE_HOST, LOOPBACK
from system_under_test.docker.engine import last_line

START_TIMEOUT_S = 60.0
# A poll costs an engine call (and for most tests a ``docker exec``): 0.1 s between two is
# short beside them.
POLL_S = 0.1


def ports_open(address: str, ports: Sequence[int]) -> bool:
    """Whether every one of ``ports`` at ``address`` accepts a TCP connection now."""
    try:
        for port in ports:
            socket.create_connection((address, port), timeout=1.0).close()
    except OSError:
        return False
    return True


def tls_context(ca_file: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca_file))


def healthz_ok(https_port: int, ca_file: Path) -> bool:
    """Whether ``GET /healthz`` through the edge (TLS, verified for votriz.test) answers 200."""
    try:
        with socket.create_connection((LOOPBACK, https_port), timeout=2.0) as raw, \
                tls_context(ca_file).wrap_socket(raw, server_hostname=EDGE_HOST) as tls:
            tls.sendall(f"GET /healthz HTTP/1.1\r\nHost: {EDGE_HOST}\r\nConnection: close\r\n\r\n"
                        .encode("ascii"))
            status_line = tls.recv(64).split(b"\r\n", 1)[0]
            return status_line.startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def redirect_location(http_port: int) -> str:
    connection = http.client.HTTPConnection(LOOPBACK, http_port, timeout=2.0)
    try:
        connection.request("GET", "/", headers={"Host": EDGE_HOST})
        return connection.getresponse().getheader("Location") or ""
    except OSError:
        return ""
    finally:
        connection.close()


class Abandoned(StackError):
    """A wait stopped because another step of the same :func:`together` failed."""


def wait(ready: Callable[[], bool], what: str, container: Any,
         timeout_s: float = START_TIMEOUT_S, *, stop: threading.Event | None = None) -> None:
    """Poll ``ready()`` while ``container`` runs, until it is true.

    Raises:
        StackError: the container stopped, or was not ready within ``timeout_s``.
        Abandoned: ``stop`` was set (another step failed) before it was ready.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        if stop is not None and stop.is_set():
            raise Abandoned(f"{what}: abandoned")
        container.reload()
        if container.status not in ("created", "running"):
            raise StackError(f"{what}: container {container.name} is {container.status}: "
                             f"{last_line(container.logs(tail=5))}")
        if container.status == "running" and ready():
            return
        if time.monotonic() > deadline:
            raise StackError(f"{what}: not ready after {timeout_s:.0f} s "
                             f"(docker logs {container.name}: {last_line(container.logs(tail=5))})")
        time.sleep(POLL_S)


def together(steps: Sequence[Callable[[threading.Event], Any]]) -> list[Any]:
    """Run each step in a thread of its own, all at once; their results, in order.

    Each step is handed an event that is set as soon as any step fails, so that its waits
    stop (:class:`Abandoned`) instead of running to their deadlines. The error raised is
    the first failure's (in the order of ``steps``), not an abandoned wait's.
    """
    stop = threading.Event()

    def run(step: Callable[[threading.Event], Any]) -> Any:
        try:
            return step(stop)
        except BaseException:
            stop.set()
            raise

    pool = ThreadPoolExecutor(max_workers=max(1, len(steps)))
    try:
        futures = [pool.submit(run, step) for step in steps]
        for future in futures:
            future.exception()  # waits; an interrupt here stops the other steps' waits too
    except BaseException:
        stop.set()
        raise
    finally:
        pool.shutdown(wait=True)
    errors = [error for error in (f.exception() for f in futures) if error is not None]
    if errors:
        raise next((e for e in errors if not isinstance(e, Abandoned)), errors[0])
    return [f.result() for f in futures]
