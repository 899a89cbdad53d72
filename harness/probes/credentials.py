"""Does a password work? One login attempt at PostgreSQL or Redis, never printing the password.

The password-rotation checks try the old and the new password from the HSM
directly at the store, as the application would log in.
"""

from __future__ import annotations

import psycopg
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry


def try_postgres(dsn: str, role: str, password: str, timeout_s: float) -> str:
    """``accepted``, ``refused``, or what else happened (never the password)."""
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    try:
        conn = psycopg.connect(host=params.get("host", "127.0.0.1"), port=params.get("port", 5432),
                               dbname=params.get("dbname", "postgres"), user=role,
                               password=password, connect_timeout=max(1, round(timeout_s)),
                               sslmode=params.get("sslmode", "prefer"))
    except psycopg.OperationalError as exc:
        text = str(exc)
        if "password authentication failed" in text or "authentication failed" in text:
            return "refused"
        return f"connection failed: {text.splitlines()[0] if text else type(exc).__name__}"
    conn.close()
    return "accepted"


def try_redis(host: str, port: int, password: str, timeout_s: float) -> str:
    """``accepted``, ``refused``, or what else happened (never the password)."""
    # No retry: redis-py would repeat a timed-out command, multiplying the policy's timeout.
    client = redis.Redis(host=host, port=port, password=password, socket_timeout=timeout_s,
                         socket_connect_timeout=timeout_s, retry=Retry(NoBackoff(), 0))
    try:
        client.ping()
    except redis.AuthenticationError:
        return "refused"
    except redis.ResponseError as exc:
        return "refused" if "WRONGPASS" in str(exc) or "invalid password" in str(exc) else \
            f"unexpected answer: {type(exc).__name__}"
    except redis.RedisError as exc:
        return f"connection failed: {type(exc).__name__}"
    finally:
        client.close()
    return "accepted"
