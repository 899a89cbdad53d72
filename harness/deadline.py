"""Deadlines over whole network exchanges, so that a trickling peer cannot hold a check.

Client libraries bound each *read* (httpx, redis-py, Python sockets): a peer that
sends one byte just before every read times out holds them for ever. A
:class:`Deadline` is fixed when an exchange starts (a request sent, a reply
awaited) and every wait inside the exchange gets only the time that is left,
so the exchange as a whole ends by it. When it expires the caller says so in
one sentence naming the peer, what it sent and the policy's limit
(:meth:`Exchange.expired_sentence`).

Three ways to apply it, by what the library lets us reach:

- a socket the harness reads itself: :func:`recv_within` gives each ``recv`` the
  time left (CPython's TLS handshake and ``sendall`` are already bounded as a
  whole by the socket's timeout);
- httpx: :class:`DeadlineTransport`, whose network streams clamp every read,
  write, connect and TLS handshake to the time left of the request in
  progress, response body included;
- a library whose wait cannot be shortened (psycopg's query wait):
  :func:`watchdog` calls an action at the deadline from a timer thread, e.g.
  :func:`shutdown_socket` on the connection's socket, which ends the blocked
  read at once;
- a library whose sockets are out of reach and whose threads cannot be stopped
  (sslyze's scanner): :func:`run_in_child` runs the whole call in a forked
  child that is killed at the deadline, as the HSM probe does for PKCS#11.
"""

from __future__ import annotations

import contextvars
import multiprocessing
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpcore
import httpx

from harness.child_calls import ChildWords, answer_from_child


@dataclass(frozen=True)
class Deadline:
    """A point in monotonic time by which one exchange must end.

    Attributes:
        seconds: the time allowed, as the policy states it.
        key: the policy key it comes from (``timeouts.request_s``), for messages.
        started: ``time.monotonic()`` when the exchange started.
    """

    seconds: float
    key: str
    started: float = field(default_factory=time.monotonic)

    @property
    def at(self) -> float:
        """The monotonic time at which it expires."""
        return self.started + self.seconds

    def remaining(self) -> float:
        """Seconds left (never below 0)."""
        return max(0.0, self.at - time.monotonic())

    def elapsed(self) -> float:
        """Seconds since the exchange started."""
        return time.monotonic() - self.started

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self.at

    def clamp(self, timeout: float | None) -> float:
        """``timeout`` shortened to the time left (``None``, no timeout, becomes the time left)."""
        left = self.remaining()
        return left if timeout is None else min(timeout, left)

    def limit(self) -> str:
        """``the policy's 2 s (timeouts.request_s)``."""
        return f"the policy's {self.seconds:g} s ({self.key})"


@dataclass
class Exchange:
    """One request and its answer, under one deadline.

    Attributes:
        peer: who answers, in words and address (``the edge 127.0.0.1:8443``).
        deadline: by when the whole exchange must end.
        received: bytes of the answer received so far (after any TLS handshake).
        expired_at_s: seconds after the start at which the deadline cut the exchange;
            None while it has not.
        awaited: what the peer had to finish (``its answer``, ``its TLS handshake``).

    The probes that remember a peer that trickled (:mod:`harness.trickling_peers`) record the
    exchange they asked for themselves, from this record.
    """

    peer: str
    deadline: Deadline
    received: int = 0
    expired_at_s: float | None = None
    awaited: str = "its answer"

    def cut(self) -> None:
        """Record that the deadline ended the exchange."""
        if self.expired_at_s is None:
            self.expired_at_s = self.deadline.elapsed()

    def expired_sentence(self) -> str:
        """What happened, in one sentence, from the exchange's own record."""
        elapsed = self.expired_at_s if self.expired_at_s is not None else self.deadline.elapsed()
        if self.received:
            return (f"{self.peer} sent {self.received} bytes in {elapsed:.1f} s and did not finish "
                    f"{self.awaited} within {self.deadline.limit()}")
        return f"{self.peer} did not answer within {self.deadline.limit()}"


class ExchangeExpired(TimeoutError):
    """An exchange's deadline passed; the message is :meth:`Exchange.expired_sentence`."""

    def __init__(self, exchange: Exchange) -> None:
        exchange.cut()
        super().__init__(exchange.expired_sentence())
        self.exchange = exchange


def recv_within(sock: socket.socket, exchange: Exchange, size: int = 4096, *, count: bool = True) -> bytes:
    """One ``recv`` given only the exchange's time left (its bytes counted as received unless
    ``count`` is False).

    Raises:
        ExchangeExpired: the deadline passed before or during the wait.
    """
    left = exchange.deadline.remaining()
    if left <= 0:
        raise ExchangeExpired(exchange)
    sock.settimeout(left)
    try:
        data = sock.recv(size)
    except TimeoutError:
        raise ExchangeExpired(exchange) from None
    if count:
        exchange.received += len(data)
    return data


class TlsWithin:
    """A TLS client connection over ``sock`` whose handshake, writes and reads share one deadline.

    OpenSSL runs over memory buffers and the socket is read here with
    :func:`recv_within`, so the exchange counts every byte the peer sent,
    handshake included: a peer that trickles its handshake is told apart from
    one that never answers. After the handshake only application bytes are counted
    (a TLS 1.3 server sends session tickets before any answer).
    """

    def __init__(self, sock: socket.socket, context: ssl.SSLContext, host: str, exchange: Exchange) -> None:
        self._sock = sock
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_hostname=host)
        self.exchange = exchange
        self._handshaking = False

    def _flush(self) -> None:
        pending = self._outgoing.read()
        if pending:
            self._sock.settimeout(max(self.exchange.deadline.remaining(), 0.001))
            try:
                self._sock.sendall(pending)
            except TimeoutError:
                raise ExchangeExpired(self.exchange) from None

    def _pull(self) -> None:
        data = recv_within(self._sock, self.exchange, 16384, count=self._handshaking)
        if not data:
            self._incoming.write_eof()
        else:
            self._incoming.write(data)

    def handshake(self) -> None:
        """Complete the handshake.

        Raises:
            ExchangeExpired: not complete by the deadline.
            ssl.SSLError, OSError: the peer refused or closed.
        """
        self._handshaking = True
        try:
            while True:
                try:
                    self._tls.do_handshake()
                    self._flush()
                    return
                except ssl.SSLWantReadError:
                    self._flush()
                    self._pull()
        finally:
            self._handshaking = False

    def sendall(self, data: bytes) -> None:
        self._tls.write(data)
        self._flush()

    def http_head(self, host: str, path: str = "/", limit: int = 65536) -> bytes:
        """Send ``GET path`` and read the answer's head (up to ``limit`` bytes, or what came
        before the peer closed).

        Raises:
            ExchangeExpired: the head had not come by the deadline.
            ssl.SSLError, OSError: the peer refused or reset.
        """
        self.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: votriz-audit\r\n"
                     "Connection: close\r\n\r\n".encode("ascii", "replace"))
        head = b""
        while b"\r\n\r\n" not in head and len(head) < limit:
            chunk = self.recv()
            if not chunk:
                break
            head += chunk
        return head

    def recv(self) -> bytes:
        """Application bytes the peer sent (b"" when it closed)."""
        while True:
            try:
                data = self._tls.read(16384)
                self.exchange.received += len(data)
                return data
            except ssl.SSLWantReadError:
                self._flush()
                self._pull()
            except ssl.SSLZeroReturnError:
                return b""


def shutdown_socket(fileno: int) -> None:
    """Shut a socket down in both directions, by its file descriptor, from any thread.

    A read blocked on it returns at once (end of file); the descriptor stays open
    for its owner to close. Errors (already closed) are ignored.
    """
    try:
        duplicate = socket.socket(fileno=os.dup(fileno))
    except OSError:
        return
    try:
        duplicate.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        duplicate.close()


@dataclass
class Watch:
    """Attributes: fired (whether the watchdog acted because the deadline passed)."""

    fired: bool = False


@contextmanager
def watchdog(deadline: Deadline, on_expiry: Callable[[], None]) -> Iterator[Watch]:
    """Call ``on_expiry`` from a timer thread if the block is still running at the deadline.

    For waits a library cannot shorten: the action (e.g. :func:`shutdown_socket`)
    makes the blocked call return with an error, and ``Watch.fired`` tells the
    caller that the deadline, not the peer, ended it.
    """
    watch = Watch()
    lock = threading.Lock()
    done = False

    def fire() -> None:
        with lock:
            if done:
                return
            watch.fired = True
        on_expiry()

    timer = threading.Timer(deadline.remaining(), fire)
    timer.daemon = True
    timer.start()
    try:
        yield watch
    finally:
        with lock:
            done = True
        timer.cancel()


# --- httpx: every request through a DeadlineTransport ends by its deadline, body included ---------

_CURRENT: contextvars.ContextVar[Exchange | None] = contextvars.ContextVar("votriz_exchange", default=None)
#: The key under which a request's :class:`Exchange` is kept in ``request.extensions``.
EXCHANGE_EXTENSION = "votriz_exchange"


class _DeadlineStream(httpcore.NetworkStream):
    """A network stream whose every wait is clamped to the current exchange's time left."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    @staticmethod
    def _left(timeout: float | None) -> tuple[Exchange | None, float | None]:
        exchange = _CURRENT.get()
        if exchange is None:
            return None, timeout
        left = exchange.deadline.clamp(timeout)
        if left <= 0:
            raise httpcore.ReadTimeout(str(ExchangeExpired(exchange)))
        return exchange, left

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        exchange, left = self._left(timeout)
        try:
            data = self._inner.read(max_bytes, left)
        except httpcore.ReadTimeout:
            if exchange is not None and exchange.deadline.expired:
                raise httpcore.ReadTimeout(str(ExchangeExpired(exchange))) from None
            raise
        if exchange is not None:
            exchange.received += len(data)
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        exchange, left = self._left(timeout)
        try:
            self._inner.write(buffer, left)
        except httpcore.WriteTimeout:
            if exchange is not None and exchange.deadline.expired:
                raise httpcore.WriteTimeout(str(ExchangeExpired(exchange))) from None
            raise

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        # CPython bounds a whole TLS handshake by the socket's timeout (one deadline
        # over every read of the handshake), so the time left bounds it as a whole.
        exchange, left = self._left(timeout)
        try:
            return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, left))
        except httpcore.ConnectTimeout:
            if exchange is not None and exchange.deadline.expired:
                raise httpcore.ConnectTimeout(str(ExchangeExpired(exchange))) from None
            raise

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None,
                    socket_options: Any = None) -> httpcore.NetworkStream:
        exchange = _CURRENT.get()
        left = exchange.deadline.clamp(timeout) if exchange is not None else timeout
        if left is not None and left <= 0 and exchange is not None:
            raise httpcore.ConnectTimeout(str(ExchangeExpired(exchange)))
        return _DeadlineStream(self._inner.connect_tcp(host, port, left, local_address, socket_options))

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Any = None) -> httpcore.NetworkStream:
        return _DeadlineStream(self._inner.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _BoundedBody(httpx.SyncByteStream):
    """A response body read under the deadline of the request that asked for it."""

    def __init__(self, inner: httpx.SyncByteStream, exchange: Exchange) -> None:
        self._inner = inner
        self._exchange = exchange

    def __iter__(self) -> Iterator[bytes]:
        chunks = iter(self._inner)
        while True:
            token = _CURRENT.set(self._exchange)
            try:
                chunk = next(chunks)
            except StopIteration:
                return
            finally:
                _CURRENT.reset(token)
            yield chunk

    def close(self) -> None:
        self._inner.close()


class DeadlineTransport(httpx.BaseTransport):
    """An httpx transport under which every request ends, response body included, by a deadline.

    httpx's timeouts bound each read; here each request gets a :class:`Deadline`
    of ``seconds`` when it is sent, and every connect, TLS handshake, write and
    read of it (the body too, however the caller reads it) waits only for the
    time left. On expiry httpx raises a ``TimeoutException`` whose message is
    :meth:`Exchange.expired_sentence`; :func:`exchange_of` gives the record.

    Args:
        verify: the TLS context (or False over plain HTTP).
        seconds: the deadline of each request.
        key: the policy key ``seconds`` comes from, for messages.
        peer: who answers, in words (``the edge``); the address is added.
    """

    def __init__(self, *, verify: ssl.SSLContext | bool, seconds: float, key: str = "timeouts.request_s",
                 peer: str = "the server") -> None:
        self._inner = httpx.HTTPTransport(verify=verify, retries=0)
        context = verify if isinstance(verify, ssl.SSLContext) else httpx.create_ssl_context(verify=verify)
        # httpx offers no way to give its connection pool a network backend; the pool it
        # built is replaced by the same pool with ours (tested in tests/harness/test_slow_peers.py).
        self._inner._pool.close()
        self._inner._pool = httpcore.ConnectionPool(ssl_context=context, retries=0,
                                                    network_backend=_DeadlineBackend())
        self.seconds = seconds
        self.key = key
        self.peer = peer

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        port = request.url.port or _default_port(request.url)
        exchange = Exchange(f"{self.peer} {request.url.host}:{port}", Deadline(self.seconds, self.key))
        request.extensions = {**request.extensions, EXCHANGE_EXTENSION: exchange}
        token = _CURRENT.set(exchange)
        try:
            response = self._inner.handle_request(request)
        finally:
            _CURRENT.reset(token)
        assert isinstance(response.stream, httpx.SyncByteStream)
        response.stream = _BoundedBody(response.stream, exchange)
        return response

    def close(self) -> None:
        self._inner.close()


def _default_port(url: httpx.URL) -> int:
    return 443 if url.scheme == "https" else 80


def exchange_of(exc: httpx.HTTPError) -> Exchange | None:
    """The exchange record of the request an httpx error is about, when it went through
    a :class:`DeadlineTransport`."""
    try:
        request = exc.request
    except RuntimeError:
        return None
    found = request.extensions.get(EXCHANGE_EXTENSION)
    return found if isinstance(found, Exchange) else None


def expired_exchange(exc: httpx.HTTPError) -> Exchange | None:
    """The exchange an httpx error is about, when its deadline (not a single read) ended it."""
    exchange = exchange_of(exc)
    if exchange is not None and isinstance(exc, httpx.TimeoutException) and exchange.deadline.expired:
        exchange.cut()
        return exchange
    return None


# --- a call that cannot be interrupted: in a child process killed at the deadline ----------------

# Forked from a server process, as the HSM probe's children are: the harness's own threads
# (load generators, read-ahead) are never forked.
_CHILDREN = multiprocessing.get_context("forkserver")


def run_in_child(function: Callable[..., Any], args: tuple[Any, ...], deadline: Deadline, *,
                 what: str) -> Any:
    """``function(*args)`` in a forked child, killed if it has not answered at the deadline.

    ``function`` must be a module-level function; its arguments and result must
    pickle. A :class:`ProbeError` it raises is raised here with its message.

    Raises:
        ProbeError: the child raised, ended without answering, could not start, or
            did not answer by the deadline (``what did not finish within the
            policy's N s (key)``).
    """
    return answer_from_child(_CHILDREN, function, args, deadline.remaining(), ChildWords(
        process_name="votriz-audit-bounded",
        cannot_start=f"{what}: cannot start its process",
        too_slow=f"{what} did not finish within {deadline.limit()}",
        ended=f"{what}: its process ended without an answer"))
