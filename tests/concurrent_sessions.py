"""Other sessions' statements started while a database probe reads: a migration, a login.

Shared by the tests that hold the probes to giving way to a schema change (``test_pg_reads``,
``test_database_sweep``).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest
from scratch_postgres import ScratchPostgres

from harness.policy import Policy
from harness.probes.database import DatabaseProbe


def during_the_nth_read(monkeypatch: pytest.MonkeyPatch, pg: ScratchPostgres,
                        statements: dict[str, str], nth: int = 2) -> dict[str, float]:
    """Start each of ``statements`` (name -> SQL, autocommit, no lock timeout) in a thread of its
    own as the probe's ``nth`` read begins, 0.3 s apart; the dict returned gets, by name, how
    long each took (see :func:`waited_for`)."""
    real, reads, waited = DatabaseProbe._long_read, [], {}

    def timed(name: str, statement: str) -> None:
        started = time.monotonic()
        with psycopg.connect(pg.dsn(), autocommit=True) as other:
            other.execute(statement)  # type: ignore[arg-type]
        waited[name] = time.monotonic() - started

    def long_read(self: DatabaseProbe, *args: Any, **kwargs: Any) -> Any:
        reads.append(1)
        if len(reads) == nth:
            for name, statement in statements.items():
                threading.Thread(target=timed, args=(name, statement)).start()
                time.sleep(0.3)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(DatabaseProbe, "_long_read", long_read)
    return waited


def waited_for(waited: dict[str, float], names: int, within_s: float = 10.0) -> dict[str, float]:
    """``waited`` once ``names`` statements have ended (or ``within_s`` has passed)."""
    deadline = time.monotonic() + within_s
    while len(waited) < names and time.monotonic() < deadline:
        time.sleep(0.05)
    return waited


def with_command_s(policy: Policy, seconds: float) -> Policy:
    """``policy`` with ``timeouts.command_s`` set to ``seconds``."""
    return policy.model_copy(update={"timeouts": policy.timeouts.model_copy(
        update={"command_s": seconds})})
