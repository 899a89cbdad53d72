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

    def __init__(self, *args: Any, exchange_s: float, record: list[Exchange], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        self._exchange_s = exchange_s
        self._record = record
        self.exchange: Exchange | None = None

    def _connect(self) -> Any:
        return _DeadlineSocket(super()._connect(), self)  # type: ignore[no-untyped-call]

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        self.exchange = Exchange(f"Redis at {self.host}:{self.port}",
                                 Deadline(self._exchange_s, "timeouts.request_s"))
        self._record[:] = [self.exchange]
        super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]


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
    # No retries: redis-py retries a command that timed out, which multiplies the policy's
    # timeout (a Redis that accepts and never answers took 15 times it). Each command, its
    # reply included, ends within timeouts.request_s as a whole (_DeadlineConnection).
    record: list[Exchange] = []
    pool = redis.ConnectionPool(connection_class=_DeadlineConnection, host=config.host, port=config.port,
                                password=password, socket_timeout=policy.timeouts.request_s,
                                socket_connect_timeout=policy.timeouts.connect_s,
                                retry=Retry(NoBackoff(), 0), exchange_s=policy.timeouts.request_s,
                                record=record)
    client = redis.Redis(connection_pool=pool, retry=Retry(NoBackoff(), 0))
    where = f"Redis at {config.host}:{config.port}"
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
        cut = next((e for e in record if e.expired_at_s is not None and e.received), None)
        if cut is not None:
            raise ProbeError(cut.expired_sentence()) from None
        raise ProbeError(f"{where} did not answer in time") from None
    except redis.RedisError as exc:
        raise ProbeError(f"{where}: {type(exc).__name__}: {exc}") from None
    finally:
        client.close()
        pool.disconnect()
