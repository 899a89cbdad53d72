"""Every key and value in the service's Redis, as byte streams for the plaintext sweep.

The password comes from the HSM label the profile names (the page promises
the Redis password lives there) or from a file; it is registered as a known
secret before use. Keys are walked with ``SCAN`` and values read per type in
pages, so a large Redis never has to fit in memory.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from harness.deadline import Deadline, Exchange
from harness.outcomes import ProbeError
from harness.policy import Policy
from harness.probes import hsm as hsm_probe
from harness.profile import ProfileError, TargetProfile
from harness.redaction import KnownSecrets

PAGE = 1000


class _DeadlineSocket:
    """A connection's socket whose reads wait only for the time left of the command in progress.

    redis-py's ``socket_timeout`` bounds each read: a Redis that trickles a reply one
    byte at a time never exceeds it. Every ``recv`` here gets the smaller of that
    timeout and the time left of the connection's current :class:`Exchange`.
    """

    def __init__(self, sock: socket.socket, connection: _DeadlineConnection) -> None:
        self._sock = sock
        self._connection = connection
        self._timeout = sock.gettimeout()

    def settimeout(self, timeout: float | None) -> None:
        self._timeout = timeout
        self._sock.settimeout(timeout)

    def gettimeout(self) -> float | None:
        return self._timeout

    def _bounded(self, read: Any, *args: Any) -> Any:
        exchange = self._connection.exchange
        if exchange is None:
            return read(*args)
        left = exchange.deadline.remaining()
        if left <= 0:
            exchange.cut()
            raise TimeoutError("the command's deadline passed")
        self._sock.settimeout(left if self._timeout is None else min(self._timeout, left))
        try:
            got = read(*args)
        except TimeoutError:
            if exchange.deadline.expired:
                exchange.cut()
            raise
        finally:
            self._sock.settimeout(self._timeout)
        exchange.received += got if isinstance(got, int) else len(got)
        return got

    def recv(self, size: int, *flags: int) -> bytes:
        data: bytes = self._bounded(self._sock.recv, size, *flags)
        return data

    def recv_into(self, buffer: Any, *args: int) -> int:
        count: int = self._bounded(self._sock.recv_into, buffer, *args)
        return count

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class _DeadlineConnection(redis.Connection):
    """A Redis connection under which each command, its whole reply included, ends by a deadline.

    Attributes:
        exchange: the command in progress (set when it is sent), None before the first.
    """

    def __init__(self, *args: Any, exchange_s: float, exchange_key: str, peer: str,
                 shared: Deadline | None, record: list[Exchange], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        self._exchange_s = exchange_s
        self._exchange_key = exchange_key
        self._peer = peer
        self._shared = shared
        self._record = record
        self.exchange: Exchange | None = None

    def _connect(self) -> Any:
        return _DeadlineSocket(super()._connect(), self)  # type: ignore[no-untyped-call]

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        deadline = self._shared or Deadline(self._exchange_s, self._exchange_key)
        self.exchange = Exchange(self._peer, deadline)
        self._record[:] = [self.exchange]
        super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]


class DeadlineRedis:
    """A redis-py client under which every command, its whole reply included, ends by a deadline.

    redis-py's ``socket_timeout`` bounds each read, so a Redis that trickles its
    reply runs far past it. Here every read waits only for the time left of the
    command in progress: each command gets ``seconds`` from when it is sent, or,
    with ``whole=True``, all commands (AUTH, HELLO, PING ...) share one deadline
    fixed when the client is made, for a single question asked as a whole. No
    retries: redis-py would repeat a command that timed out, multiplying the deadline.

    Attributes:
        client: the redis-py client.
        where: ``Redis at host:port``, for messages.
    """

    def __init__(self, host: str, port: int, *, password: str | None, seconds: float, key: str,
                 connect_s: float, connect_key: str = "timeouts.connect_s", whole: bool = False,
                 protocol: int | None = None, peer: str | None = None) -> None:
        self.where = f"Redis at {host}:{port}"
        self._connect_limit = Deadline(connect_s, connect_key).limit()
        self._record: list[Exchange] = []
        shared = Deadline(seconds, key) if whole else None
        extra: dict[str, Any] = {} if protocol is None else {"protocol": protocol}
        self._pool = redis.ConnectionPool(
            connection_class=_DeadlineConnection, host=host, port=port, password=password,
            socket_timeout=seconds, socket_connect_timeout=min(connect_s, seconds) if whole else connect_s,
            retry=Retry(NoBackoff(), 0), exchange_s=seconds, exchange_key=key,
            peer=peer or self.where, shared=shared, record=self._record, **extra)
        self.client = redis.Redis(connection_pool=self._pool, retry=Retry(NoBackoff(), 0))

    @property
    def last_exchange(self) -> Exchange | None:
        """The command sent last (None: no command was sent, the connection was not made)."""
        return self._record[-1] if self._record else None

    def timed_out(self) -> str:
        """What a ``redis.TimeoutError`` was, in one sentence naming the peer and the deadline."""
        exchange = self.last_exchange
        if exchange is None:
            return f"{self.where} did not accept a connection within {self._connect_limit}"
        exchange.cut()
        return exchange.expired_sentence()

    def close(self) -> None:
        self.client.close()
        self._pool.disconnect()

    def __enter__(self) -> DeadlineRedis:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def redis_password(profile: TargetProfile, policy: Policy, known_secrets: KnownSecrets) -> str | None:
    """The Redis password per the profile (HSM label first, then file); None if none is named.

    Raises:
        ProbeError: the profile names a source that cannot be read.
    """
    config = profile.redis
    if config is None:
        raise ProbeError("the profile has no [redis] section")
    if config.password_hsm_label:
        if profile.hsm is None:
            raise ProbeError("redis.password_hsm_label is set but the profile has no [hsm] section")
        label = config.password_hsm_label
        value = hsm_probe.read_values(profile.hsm, [label], known_secrets,
                                      timeout_s=policy.timeouts.request_s).require(label)
        return value.decode("utf-8", "replace")
    if config.password is not None:
        try:
            password = config.password.read("redis.password")
        except ProfileError as exc:
            raise ProbeError(str(exc)) from None
        if len(password) >= KnownSecrets.min_length:
            known_secrets.add(password, "Redis password")
        return password
    return None


def _as_bytes(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8", "replace")


def _value_chunks(client: redis.Redis, key: bytes, kind: str) -> Iterator[bytes]:
    if kind == "string":
        value = client.get(key)
        if value is not None:
            yield _as_bytes(value)
    elif kind == "hash":
        for field, value in client.hscan_iter(key, count=PAGE):
            yield _as_bytes(field) + b"\n" + _as_bytes(value) + b"\n"
    elif kind == "set":
        for member in client.sscan_iter(key, count=PAGE):
            yield _as_bytes(member) + b"\n"
    elif kind == "zset":
        for member, _score in client.zscan_iter(key, count=PAGE):
            yield _as_bytes(member) + b"\n"
    elif kind == "list":
        start = 0
        while page := client.lrange(key, start, start + PAGE - 1):
            for item in page:
                yield _as_bytes(item) + b"\n"
            start += PAGE
    elif kind == "stream":
        last = "-"
        while entries := client.xrange(key, min=last, count=PAGE):
            for entry_id, fields in entries:
                for field, value in (fields or {}).items():
                    yield _as_bytes(field) + b"\n" + _as_bytes(value) + b"\n"
                last = "(" + _as_bytes(entry_id).decode()
            if len(entries) < PAGE:
                break


def redis_contents(profile: TargetProfile, policy: Policy, known_secrets: KnownSecrets
                   ) -> Iterator[tuple[str, Iterator[bytes]]]:
    """``(location, chunks)`` for every key: the key's name, then its value(s).

    Locations read ``redis:<key>`` with any known secret in the key name redacted.

    Raises:
        ProbeError: Redis cannot be reached, refuses the password, or times out.
    """
    config = profile.redis
    if config is None:
        raise ProbeError("the profile has no [redis] section")
    password = redis_password(profile, policy, known_secrets)
    # Each command, its reply included, ends within timeouts.request_s as a whole (DeadlineRedis).
    store = DeadlineRedis(config.host, config.port, password=password, seconds=policy.timeouts.request_s,
                          key="timeouts.request_s", connect_s=policy.timeouts.connect_s)
    client = store.client
    where = store.where
    try:
        client.ping()
        for key in client.scan_iter(count=PAGE):
            raw_key = _as_bytes(key)
            kind = _as_bytes(client.type(raw_key)).decode("ascii", "replace")
            location = "redis:" + known_secrets.redact(raw_key.decode("utf-8", "replace"))

            def chunks(raw_key: bytes = raw_key, kind: str = kind) -> Iterator[bytes]:
                yield raw_key + b"\n"
                yield from _value_chunks(client, raw_key, kind)

            yield location, chunks()
    except redis.AuthenticationError:
        raise ProbeError(f"{where} refused the password") from None
    except redis.TimeoutError:
        cut = store.last_exchange
        if cut is not None and cut.received:
            raise ProbeError(store.timed_out()) from None
        raise ProbeError(f"{where} did not answer in time") from None
    except redis.RedisError as exc:
        raise ProbeError(f"{where}: {type(exc).__name__}: {exc}") from None
    finally:
        store.close()
