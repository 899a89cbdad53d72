"""PostgreSQL as both backends set it up: database ``votriz``, its roles, their SCRAM verifiers.

Roles: ``votriz_app`` (owner of the tables) and ``votriz_auditor`` (SELECT
only). Role passwords are sent to the server as SCRAM verifiers computed
here, so no statement the server sees (or could log) holds a plaintext password.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

DATABASE = "votriz"
APP_ROLE = "votriz_app"
AUDITOR_ROLE = "votriz_auditor"
SUPERUSER = "postgres"
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

    def accepts_connections(self) -> bool:
        """Whether the superuser can connect now (the readiness test of both backends)."""
        try:
            with psycopg.connect(self.superuser_conninfo(), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False


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
