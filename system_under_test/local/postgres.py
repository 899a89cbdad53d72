"""PostgreSQL 15 for one stack: a cluster in ``STATE/pgdata`` run by the service user.

Access rules (``pg_hba.conf``): the superuser ``postgres`` only through the
unix socket in ``STATE/run``, whose permissions (0700, owned by the service
user) keep every other local account out; the roles ``votriz_app`` and
``votriz_auditor`` with SCRAM-SHA-256 over TCP on 127.0.0.1 (or the socket).
Role passwords are sent to the server as SCRAM verifiers computed here, so
no statement the server sees (or could log) holds a plaintext password.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from system_under_test.common.postgres_roles import (
    APP_ROLE,
    AUDITOR_ROLE,
    SUPERUSER,
    PostgresServer,
)
from system_under_test.local.processes import (
    ServiceUser,
    StackError,
    base_environment,
    find_binary,
    spawn,
    wait_until,
)

START_TIMEOUT_S = 30.0
INITDB_TIMEOUT_S = 60.0


def _hba() -> str:
    return (
        "# Written by system_under_test.local.postgres.\n"
        "# TYPE  DATABASE  USER                         ADDRESS       METHOD\n"
        f"local   all       {SUPERUSER}                      trust\n"
        f"local   all       {APP_ROLE},{AUDITOR_ROLE}   scram-sha-256\n"
        f"host    all       {APP_ROLE},{AUDITOR_ROLE}   127.0.0.1/32  scram-sha-256\n"
    )


def _settings(port: int, socket_dir: Path, pid_file: Path) -> str:
    return (
        "\n# Written by system_under_test.local.postgres.\n"
        "listen_addresses = '127.0.0.1'\n"
        f"port = {port}\n"
        f"unix_socket_directories = '{socket_dir}'\n"
        # Only the service user (and root) may connect through the socket,
        # which is what makes the superuser's trust entry safe.
        "unix_socket_permissions = 0700\n"
        f"external_pid_file = '{pid_file}'\n"
        "password_encryption = 'scram-sha-256'\n"
        # Small, because several stacks share a 2-core test machine.
        "shared_buffers = 16MB\n"
        "max_connections = 40\n"
        "log_destination = 'stderr'\n"
        "logging_collector = off\n"
        "log_line_prefix = '%m [%p] %q%u@%d '\n"
    )


def begin_init_cluster(state_dir: Path, user: ServiceUser, *,
                       search_path: Sequence[str] | None = None) -> subprocess.Popen[bytes]:
    """Start ``initdb`` for ``STATE/pgdata`` as the service user, in the background.

    ``up`` provisions the HSM meanwhile; ``finish_init_cluster`` waits for it.
    """
    initdb = find_binary("initdb", search_path)
    setpriv = find_binary("setpriv", search_path) if user.drop_privileges else ""
    pgdata = state_dir / "pgdata"
    pgdata.mkdir(mode=0o700)
    user.chown(pgdata)
    with open(state_dir / "logs" / "postgres.log", "ab") as log:
        return subprocess.Popen(
            user.argv([initdb, "-D", str(pgdata), "-U", SUPERUSER, "-E", "UTF8", "--no-locale",
                       "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync"], setpriv),
            cwd=state_dir, env=base_environment(), stdout=log, stderr=subprocess.STDOUT,
        )


def finish_init_cluster(state_dir: Path, process: subprocess.Popen[bytes], *, port: int) -> Path:
    """Wait for ``initdb`` (bounded) and write the cluster's access rules and settings."""
    log_file = state_dir / "logs" / "postgres.log"
    try:
        returncode = process.wait(timeout=INITDB_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        raise StackError(f"initdb: not done after {INITDB_TIMEOUT_S:.0f} s (see {log_file})") \
            from None
    if returncode != 0:
        raise StackError(f"initdb failed with status {returncode} (see {log_file})")
    pgdata = state_dir / "pgdata"
    socket_dir = state_dir / "run"
    (pgdata / "pg_hba.conf").write_text(_hba(), encoding="ascii")
    with open(pgdata / "postgresql.conf", "a", encoding="ascii") as conf:
        conf.write(_settings(port, socket_dir, socket_dir / "postgres.pid"))
    return pgdata


def init_cluster(state_dir: Path, user: ServiceUser, *, port: int,
                 search_path: Sequence[str] | None = None) -> Path:
    """Create ``STATE/pgdata`` as the service user and write its configuration."""
    process = begin_init_cluster(state_dir, user, search_path=search_path)
    return finish_init_cluster(state_dir, process, port=port)


def start(state_dir: Path, user: ServiceUser, *, port: int,
          search_path: Sequence[str] | None = None) -> PostgresServer:
    """Start the postmaster (as the service user) and wait until it accepts the superuser."""
    postgres = find_binary("postgres", search_path)
    setpriv = find_binary("setpriv", search_path) if user.drop_privileges else ""
    pgdata = state_dir / "pgdata"
    socket_dir = state_dir / "run"
    log_file = state_dir / "logs" / "postgres.log"
    # setpriv execs postgres, so the pid we get is the postmaster's.
    pid = spawn(user.argv([postgres, "-D", str(pgdata)], setpriv), cwd=pgdata,
                env=base_environment(), log_file=log_file)
    server = PostgresServer(pid=pid, port=port, pgdata=pgdata, socket_dir=socket_dir,
                            pid_file=socket_dir / "postgres.pid", log_file=log_file)

    wait_until(server.accepts_connections, timeout_s=START_TIMEOUT_S, what="postgres", pid=pid,
               log_file=log_file)
    return server
