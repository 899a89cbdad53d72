"""How libpq bounds a connection attempt, and how that limit reads in a message.

libpq takes ``connect_timeout`` in whole seconds, at least 2, and applies it to the whole
connection (start-up and authentication included); the policy's deadlines are floats. Used by
every PostgreSQL connection of the auditor (the database probe, the credential checks, the
health checks).
"""

from __future__ import annotations


def libpq_connect_timeout(seconds: float) -> int:
    """The ``connect_timeout`` to give psycopg for a deadline of ``seconds``: whole seconds, at
    least 2 (libpq's rule). psycopg bounds the whole connection by it, start-up and
    authentication included, so a server that trickles its answers ends there too."""
    return max(2, round(seconds))


def connect_limit(seconds: float, key: str = "timeouts.connect_s") -> str:
    """The connection deadline psycopg applied for the policy's ``seconds`` (``key``), in words."""
    applied = libpq_connect_timeout(seconds)
    if applied == seconds:
        return f"the policy's {seconds:g} s, {key}"
    return (f"after {applied} s: the policy's {key} is {seconds:g} s, "
            "and libpq waits whole seconds, at least 2")
