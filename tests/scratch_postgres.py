"""A throwaway PostgreSQL 15 cluster for tests and benchmarks that need a database but no stack.

The cluster lives under /tmp (the service user must reach it, and a concurrent
pytest session may prune old pytest tmp trees), runs as the reference stack's
service user (``nobody`` when we are root), as its servers do, listens on a
unix socket in its own directory (and on TCP when ``listen`` names an address),
and holds an empty ``votriz`` database. Leaving the ``with`` block stops it and
removes the directory. Tests import it as ``scratch_postgres``; the benchmarks
as ``tests.scratch_postgres``.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.profile import TargetProfile, parse_profile
from system_under_test.local.processes import find_binary, free_port, service_user

PG_BIN = Path("/usr/lib/postgresql/15/bin")
INSTALLED = (PG_BIN / "initdb").exists()
PSQL = str(PG_BIN / "psql") if (PG_BIN / "psql").exists() else "psql"


def as_service_user(argv: list[str]) -> list[str]:
    """``argv`` run as the reference stack's service user, as its servers are."""
    return service_user().argv(argv, find_binary("setpriv"))


@dataclass(frozen=True)
class ScratchPostgres:
    root: Path  # data directory, log and unix socket
    port: int

    def dsn(self, user: str = "postgres", dbname: str = "votriz") -> str:
        return f"host={self.root} port={self.port} dbname={dbname} user={user}"

    def profile(self, name: str, user: str = "auditor") -> TargetProfile:
        """A profile whose only data source is this cluster's ``votriz`` database as ``user``."""
        return parse_profile(f"""
name = "{name}"
[edge]
host = "votriz.test"
[database]
dsn = "{self.dsn(user)}"
""")

    def psql(self, statement: str, *, stdin: str | None = None, dbname: str = "votriz") -> str:
        """Run ``statement`` as the superuser (stop at the first error); its unaligned output."""
        return subprocess.run(
            [PSQL, "-h", str(self.root), "-p", str(self.port), "-U", "postgres", "-d", dbname,
             "-v", "ON_ERROR_STOP=1", "-qAtc", statement],
            check=True, capture_output=True, text=True, timeout=120, input=stdin).stdout

    def copy(self, table: str, rows: list[tuple[Any, ...]]) -> None:
        """Load ``rows`` into ``table`` with COPY (text format; None is NULL)."""
        def field(value: Any) -> str:
            if value is None:
                return "\\N"
            return str(value).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
        data = "".join("\t".join(field(v) for v in row) + "\n" for row in rows)
        self.psql(f"COPY {table} FROM STDIN", stdin=data)


@contextmanager
def scratch_postgres(prefix: str, *, auth: Sequence[str] = ("--auth=trust",), listen: str = "",
                     settings: Sequence[str] = (), stop: str = "immediate",
                     stop_timeout_s: float = 120) -> Iterator[ScratchPostgres]:
    """A started cluster with a ``votriz`` database; ``auth`` are initdb's options, ``settings``
    extra ``name=value`` server settings, ``stop`` the pg_ctl shutdown mode at the end."""
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    data = root / "data"
    try:
        service_user().chown(root)
        port = free_port()
        subprocess.run(as_service_user([str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres",
                                        *auth]), check=True, capture_output=True, timeout=120)
        options = " ".join([f"-p {port} -k {root} -c listen_addresses='{listen}'",
                            *(f"-c {setting}" for setting in settings)])
        subprocess.run(as_service_user([str(PG_BIN / "pg_ctl"), "-D", str(data), "-l",
                                        str(root / "pg.log"), "-w", "start", "-o", options]),
                       check=True, capture_output=True, timeout=120)
        pg = ScratchPostgres(root, port)
        pg.psql("CREATE DATABASE votriz", dbname="postgres")
        yield pg
    finally:
        if data.exists():
            subprocess.run(as_service_user([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", stop,
                                            "-w", "stop"]),
                           capture_output=True, timeout=stop_timeout_s)
        shutil.rmtree(root, ignore_errors=True)
