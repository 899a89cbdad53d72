"""PostgreSQL 15 for one stack: a cluster in ``STATE/pgdata`` run by the service user.

Access rules (``pg_hba.conf``): the superuser ``postgres`` only through the
unix socket in ``STATE/run``, whose permissions (0700, owned by the service
user) keep every other local account out; the roles ``votriz_app`` and
``votriz_auditor`` with SCRAM-SHA-256 over TCP on 127.0.0.1 (or the socket).
Role passwords are sent to the server as SCRAM verifiers computed here, so
no statement the server sees (or could log) holds a plaintext password.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from system_under_test.local.processes import (
    ServiceUser,
    StackError,
    base_environment,
    find_binary,
    spawn,
    wait_until,
)

DATABASE = "votriz"
APP_ROLE = "votriz_app"
AUDITOR_ROLE = "votriz_auditor"
SUPERUSER = "postgres"
START_TIMEOUT_S = 30.0
INITDB_TIMEOUT_S = 60.0
SCRAM_ITERATIONS = 4096


@dataclass(frozen=True)
class PostgresServer:
    """A running cluster.

    Attributes:
        pid: the postmaster's pid.
        port: its TCP port on 127.0.0.1.
        pgdata: the data directory.
        socket_dir: directory of its unix socket.
        pid_file: ``STATE/run/postgres.pid`` (written by the postmaster).
        log_file: its log.
    """

    pid: int
    port: int
    pgdata: Path
    socket_dir: Path
    pid_file: Path
    log_file: Path

    def superuser_conninfo(self, dbname: str = "postgres") -> str:
        """Conninfo of the superuser through the private unix socket (no password)."""
        return f"host={self.socket_dir} port={self.port} dbname={dbname} user={SUPERUSER}"


def scram_verifier(password: str, *, salt: bytes | None = None,
                   iterations: int = SCRAM_ITERATIONS) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for ``password`` (RFC 5802/7677)."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode("ascii")

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


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

    def accepts() -> bool:
        try:
            with psycopg.connect(server.superuser_conninfo(), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    wait_until(accepts, timeout_s=START_TIMEOUT_S, what="postgres", pid=pid, log_file=log_file)
    return server


def create_roles(server: PostgresServer, *, app_password: str, auditor_password: str) -> None:
    """Create database ``votriz``, its owner ``votriz_app`` and the read-only ``votriz_auditor``.

    The auditor gets SELECT on every table ``votriz_app`` creates in schema
    ``public`` (default privileges), and nothing else. ``votriz_app`` may
    create databases because the restore drill restores into a scratch one.
    """
    with psycopg.connect(server.superuser_conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEDB PASSWORD {}").format(
            sql.Identifier(APP_ROLE), sql.Literal(scram_verifier(app_password))))
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
            sql.Identifier(AUDITOR_ROLE), sql.Literal(scram_verifier(auditor_password))))
        conn.execute(sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(
            sql.Identifier(AUDITOR_ROLE)))
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
            sql.Identifier(DATABASE), sql.Identifier(APP_ROLE)))
        conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(
            sql.Identifier(DATABASE)))
        conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
            sql.Identifier(DATABASE), sql.Identifier(AUDITOR_ROLE)))
    with psycopg.connect(server.superuser_conninfo(DATABASE), autocommit=True) as conn:
        conn.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
        conn.execute(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(sql.Identifier(APP_ROLE)))
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(
            sql.Identifier(AUDITOR_ROLE)))
        conn.execute(sql.SQL(
            "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA public GRANT SELECT ON TABLES TO {}"
        ).format(sql.Identifier(APP_ROLE), sql.Identifier(AUDITOR_ROLE)))
