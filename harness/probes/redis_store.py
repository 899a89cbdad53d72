"""Every key and value in the service's Redis, as byte streams for the plaintext sweep.

The password comes from the HSM label the profile names (the page promises
the Redis password lives there) or from a file; it is registered as a known
secret before use. Keys are walked with ``SCAN`` and values read per type in
pages, so a large Redis never has to fit in memory.
"""

from __future__ import annotations

from collections.abc import Iterator

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from harness.outcomes import ProbeError
from harness.policy import Policy
from harness.probes import hsm as hsm_probe
from harness.profile import ProfileError, TargetProfile
from harness.redaction import KnownSecrets

PAGE = 1000


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
    # timeout (a Redis that accepts and never answers took 15 times it).
    client = redis.Redis(host=config.host, port=config.port, password=password,
                         socket_timeout=policy.timeouts.request_s,
                         socket_connect_timeout=policy.timeouts.connect_s,
                         retry=Retry(NoBackoff(), 0))
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
        raise ProbeError(f"{where} did not answer in time") from None
    except redis.RedisError as exc:
        raise ProbeError(f"{where}: {type(exc).__name__}: {exc}") from None
    finally:
        client.close()
