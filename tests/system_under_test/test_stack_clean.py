"""A clean local stack, observed from outside: the edge, the processes, the data stores, the files."""

from __future__ import annotations

import base64
import os
import socket
import ssl
import stat
from pathlib import Path

import httpx
import psycopg
import pytest

from harness.profile import load_profile
from system_under_test.local import softhsm, status
from system_under_test.local.processes import read_pid
from system_under_test.local.softhsm import HsmToken

pytestmark = pytest.mark.integration

HOST = "votriz.test"
TABLES = {"users", "mfa_backup_codes", "recovery_tokens", "brands", "channels",
          "analytics_counters", "captions"}
ALLOWED_API_ENV = {"PATH", "LANG", "LC_ALL", "PYTHONPATH", "PYTHONUNBUFFERED", "VOTRIZ_CONFIG",
                   "VOTRIZ_HSM_PIN_FILE", "SOFTHSM2_CONF"}


def edge_get(info, path: str, **kwargs) -> httpx.Response:
    """GET ``path`` from the edge on 127.0.0.1 with SNI and Host ``votriz.test``."""
    context = ssl.create_default_context(cafile=str(info.ca_file))
    with httpx.Client(verify=context, timeout=10) as client:
        return client.get(f"https://127.0.0.1:{info.ports.https}{path}",
                          headers={"Host": HOST}, extensions={"sni_hostname": HOST}, **kwargs)


def tls_version(port: int, ca_file: Path, *, maximum: ssl.TLSVersion | None = None) -> str:
    """The TLS version a verified handshake for ``votriz.test`` negotiates (SSLError if none)."""
    context = ssl.create_default_context(cafile=str(ca_file))
    if maximum is not None:
        context.maximum_version = maximum
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname=HOST) as tls:
        return str(tls.version())


def token_of(info) -> HsmToken:
    state = info.state_dir
    return HsmToken(conf=state / "softhsm2.conf", module=softhsm.MODULE, label="votriz",
                    pin_file=state / "secrets" / "hsm-pin",
                    so_pin_file=state / "secrets" / "hsm-so-pin", token_dir=state / "tokens")


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.decode().split("=", 1) for item in raw.split(b"\0") if b"=" in item)


def uid_of(pid: int) -> int:
    status_text = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status_text.splitlines()
                    if line.startswith("Uid:")))


def test_cold_up_is_under_20_seconds(clean_stack):
    assert clean_stack.started_in_s < 20


def test_healthz_through_the_edge_over_tls13(clean_stack):
    answer = edge_get(clean_stack, "/healthz")

    assert answer.status_code == 200
    assert answer.json() == {"status": "ok"}
    assert tls_version(clean_stack.ports.https, clean_stack.ca_file) == "TLSv1.3"


def test_tls12_is_refused(clean_stack):
    with pytest.raises(ssl.SSLError):
        tls_version(clean_stack.ports.https, clean_stack.ca_file, maximum=ssl.TLSVersion.TLSv1_2)


@pytest.mark.parametrize("path", ["/healthz", "/api/v1/brands", "/does-not-exist"])
def test_security_headers_on_every_response(clean_stack, path):
    headers = edge_get(clean_stack, path).headers

    assert headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    assert "camera=()" in headers["permissions-policy"]
    assert headers["server"] == "nginx"


def test_plaintext_port_answers_only_a_bodiless_redirect(clean_stack):
    answer = httpx.get(f"http://127.0.0.1:{clean_stack.ports.http}/api/v1/brands?x=1",
                       headers={"Host": HOST}, timeout=5)

    assert answer.status_code == 301
    assert answer.headers["location"] == \
        f"https://{HOST}:{clean_stack.ports.https}/api/v1/brands?x=1"
    assert answer.content == b""


@pytest.mark.skipif(os.geteuid() != 0, reason="privileges are only dropped when started as root")
@pytest.mark.parametrize("name", ["postgres", "redis", "nginx"])
def test_servers_run_as_nobody(clean_stack, name):
    master = clean_stack.pids[name]

    assert {uid_of(pid) for pid in [master, *children(master)]} == {65534}


def test_api_environment_names_paths_only(clean_stack):
    # Given every secret value the stack holds
    values = softhsm.read_values(token_of(clean_stack), softhsm.ALL_LABELS)
    secrets_ = [v for v in values.values()] + [base64.urlsafe_b64encode(
        values[softhsm.TOKEN_KEY_V1])]
    pin = (clean_stack.state_dir / "secrets" / "hsm-pin").read_text().strip()
    master = clean_stack.pids["api"]

    # When the environment of the gunicorn master and its workers is read
    for pid in [master, *children(master)]:
        env = environ(pid)

        # Then it holds only the expected path variables, and no value of a secret
        assert set(env) <= ALLOWED_API_ENV, sorted(set(env) - ALLOWED_API_ENV)
        blob = "\0".join(env.values()).encode()
        assert not any(secret in blob for secret in secrets_), "a secret is in the environment"
        assert pin.encode() not in blob, "the PIN is in the environment"


def test_no_secret_value_in_any_file_of_the_state_dir(clean_stack):
    values = softhsm.read_values(token_of(clean_stack), softhsm.ALL_LABELS)
    ascii_secrets = {label: value for label, value in values.items()
                     if label not in {softhsm.TOKEN_KEY_V1, softhsm.JWT_SIGNING,
                                      softhsm.EMAIL_INDEX, softhsm.BACKUP_KEY}}
    ascii_secrets["fernet"] = base64.urlsafe_b64encode(values[softhsm.TOKEN_KEY_V1])
    found = set()
    for path in clean_stack.state_dir.rglob("*"):
        if not path.is_file() or stat.S_ISSOCK(path.lstat().st_mode):
            continue
        data = path.read_bytes()
        found |= {f"{label} in {path.relative_to(clean_stack.state_dir)}"
                  for label, value in ascii_secrets.items() if value in data}

    assert not found


def test_auditor_role_may_select_every_table_and_nothing_more(clean_stack):
    profile = load_profile(clean_stack.profile_path)
    password = profile.database.password.read("auditor")

    with psycopg.connect(profile.database.dsn, password=password) as conn:
        rows = conn.execute(
            "SELECT tablename, has_table_privilege(tablename, 'SELECT'),"
            " has_table_privilege(tablename, 'INSERT, UPDATE, DELETE, TRUNCATE')"
            " FROM pg_tables WHERE schemaname = 'public'").fetchall()
        can_create = conn.execute("SELECT has_schema_privilege('public', 'CREATE')").fetchone()

    assert {row[0] for row in rows} == TABLES
    assert all(row[1] and not row[2] for row in rows), rows
    assert can_create == (False,)


def test_app_role_password_is_required_over_tcp(clean_stack):
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(f"host=127.0.0.1 port={clean_stack.ports.postgres} dbname=votriz "
                        "user=votriz_app password=wrong", connect_timeout=5)


def test_superuser_is_not_reachable_over_tcp(clean_stack):
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(f"host=127.0.0.1 port={clean_stack.ports.postgres} dbname=postgres "
                        "user=postgres", connect_timeout=5)


def test_redis_refuses_commands_without_the_password(clean_stack):
    with socket.create_connection(("127.0.0.1", clean_stack.ports.redis), timeout=5) as sock:
        sock.sendall(b"*1\r\n$4\r\nPING\r\n")
        assert sock.recv(128).startswith(b"-NOAUTH")


def test_profile_is_valid_and_points_at_this_stack(clean_stack):
    profile = load_profile(clean_stack.profile_path)

    assert profile.edge.https_port == clean_stack.ports.https
    assert profile.edge.trust_anchor == clean_stack.ca_file
    assert profile.capture.url == clean_stack.capture_url
    assert {p.name for p in profile.local.processes} == {"api", "nginx", "postgres", "redis",
                                                         "fakes"}
    for process in profile.local.processes:
        assert read_pid(process.pid_file) == clean_stack.pids[process.name]
    assert all(path.exists() for path in profile.scan.config_paths)


def test_capture_api_answers_with_the_local_ca(clean_stack):
    context = ssl.create_default_context(cafile=str(clean_stack.ca_file))

    answer = httpx.get(f"{clean_stack.capture_url}/_capture/requests", params={"since": 0},
                       verify=context, timeout=5)

    assert answer.status_code == 200
    assert all(r["listener"] == "tls" for r in answer.json()["requests"])


def test_status_reports_every_process_running(clean_stack):
    report = status(clean_stack.state_dir)

    assert report.healthy
    assert set(report.running) == {"api", "nginx", "postgres", "redis", "fakes"}
