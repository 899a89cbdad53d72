"""Does a password work? One login attempt at PostgreSQL or Redis, never printing the password.

The password-rotation checks try the old and the new password from the HSM
directly at the store, as the application would log in. Each attempt ends by
its deadline as a whole: psycopg bounds the whole connection by
``connect_timeout`` (as the database probe's), and the Redis attempt (connect,
AUTH, PING) shares one deadline over every read (:class:`DeadlineRedis`), so a
store that trickles its answers cannot hold the check.
"""

from __future__ import annotations

import psycopg
import redis

from harness.probes.pg_connect import connect_limit, libpq_connect_timeout
from harness.probes.redis_store import DeadlineRedis


def try_postgres(dsn: str, role: str, password: str, timeout_s: float, *,
                 key: str = "timeouts.connect_s") -> str:
    """``accepted``, ``refused``, or what else happened (never the password).

    ``timeout_s`` is the policy's ``key``; the attempt ends by it (libpq: whole seconds, at least 2).
    """
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    host, port = params.get("host", "127.0.0.1"), params.get("port", 5432)
    try:
        conn = psycopg.connect(host=host, port=port, dbname=params.get("dbname", "postgres"), user=role,
                               password=password, connect_timeout=libpq_connect_timeout(timeout_s),
                               sslmode=params.get("sslmode", "prefer"))
    except psycopg.errors.ConnectionTimeout:
        return (f"connection failed: the database at {host}:{port} did not complete the login "
                f"({connect_limit(timeout_s, key)})")
    except psycopg.OperationalError as exc:
        text = str(exc)
        if "password authentication failed" in text or "authentication failed" in text:
            return "refused"
        return f"connection failed: {text.splitlines()[0] if text else type(exc).__name__}"
    conn.close()
    return "accepted"


def try_redis(host: str, port: int, password: str, timeout_s: float, *,
              key: str = "timeouts.connect_s") -> str:
    """``accepted``, ``refused``, or what else happened (never the password).

    ``timeout_s`` is the policy's ``key``; the whole attempt (connect, AUTH, PING) ends by it.
    """
    with DeadlineRedis(host, port, password=password, seconds=timeout_s, key=key, connect_s=timeout_s,
                       connect_key=key, whole=True) as store:
        try:
            store.client.ping()
        except redis.AuthenticationError:
            return "refused"
        except redis.ResponseError as exc:
            return "refused" if "WRONGPASS" in str(exc) or "invalid password" in str(exc) else \
                f"unexpected answer: {type(exc).__name__}"
        except redis.TimeoutError:
            return f"connection failed: {store.timed_out()}"
        except redis.RedisError as exc:
            return f"connection failed: {type(exc).__name__}"
    return "accepted"
