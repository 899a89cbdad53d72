"""Real local servers for the probe tests: a private PKI, a throwaway nginx edge
configured like the reference service's (CONTRACT.md), silent listeners, closed ports.

Everything binds to 127.0.0.1 on ports the kernel picks, and every process
started here is stopped by its own pid at teardown.
"""

from __future__ import annotations

import datetime as dt
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from private_ca import leaf_for, new_ca

from harness.policy import Policy, TimeoutsPolicy, load_policy
from harness.profile import Edge
from system_under_test.local.processes import free_port, tcp_accepts, wait_until

HOST = "votriz.test"


@dataclass(frozen=True)
class Pki:
    """A CA and an edge certificate for votriz.test (+ SAN 127.0.0.1), as files."""

    ca_pem: Path
    cert_pem: Path
    key_pem: Path


def make_pki(directory: Path, *, days: int = 90, rsa_bits: int | None = None,
             host: str = HOST) -> Pki:
    """Write a CA and a leaf certificate signed by it into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca, ca_key = new_ca("votriz-audit test CA", now - dt.timedelta(days=1))
    leaf_key = (rsa.generate_private_key(65537, rsa_bits) if rsa_bits
                else ec.generate_private_key(ec.SECP256R1()))
    leaf = (leaf_for(host, ca.subject, leaf_key.public_key(), now - dt.timedelta(hours=1),
                     now + dt.timedelta(days=days))
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    pki = Pki(directory / "ca.pem", directory / "edge.pem", directory / "edge.key")
    pki.ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    pki.cert_pem.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    pki.key_pem.write_bytes(leaf_key.private_bytes(serialization.Encoding.PEM,
                                                   serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))
    pki.key_pem.chmod(0o600)
    return pki


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def fast_policy() -> Policy:
    """The default policy with short timeouts, so unreachable targets fail fast."""
    return load_policy().model_copy(update={"timeouts": TimeoutsPolicy(connect_s=1.0, request_s=2.0)})


@dataclass(frozen=True)
class NginxEdge:
    """A running throwaway nginx edge.

    Attributes:
        https_port, http_port: its ports on 127.0.0.1.
        pki: its certificate files.
        pid: the nginx master's pid (ours to stop).
        directory: its prefix directory (config, logs).
    """

    https_port: int
    http_port: int
    pki: Pki
    pid: int
    directory: Path

    def edge(self, **changes: object) -> Edge:
        values: dict[str, object] = {
            "host": HOST, "address": "127.0.0.1", "https_port": self.https_port,
            "http_port": self.http_port, "trust_anchor": self.pki.ca_pem,
            "sample_paths": ("/", "/healthz", "/api/v1/brands", "/does-not-exist"),
        }
        values.update(changes)
        return Edge.model_validate(values)


# The edge's headers, as the CONTRACT's edge sends them on every answer ("always").
GOOD_HEADERS = """
    add_header Strict-Transport-Security "max-age=63072000; includeSubDomains" always;
    add_header Content-Security-Policy "default-src 'self'; frame-ancestors 'none'" always;
    add_header X-Content-Type-Options "nosniff" always;
    add_header X-Frame-Options "DENY" always;
    add_header Referrer-Policy "no-referrer" always;
    add_header Permissions-Policy "camera=(), microphone=(), geolocation=()" always;
"""


def nginx_config(directory: Path, pki: Pki, https_port: int, http_port: int, *,
                 protocols: str = "TLSv1.3", headers: str = GOOD_HEADERS,
                 server_tokens: str = "off", http_body: str | None = None) -> str:
    """An nginx configuration shaped like the reference edge (TLS 1.3, headers, :80 redirects).

    ``http_body`` replaces the plaintext port's redirect (to model http-serves-content).
    """
    http_location = http_body or f"return 301 https://$host:{https_port}$request_uri;"
    return f"""
daemon off;
master_process on;
worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log {directory}/access.log;
    client_body_temp_path {directory}/tmp-body;
    proxy_temp_path {directory}/tmp-proxy;
    fastcgi_temp_path {directory}/tmp-fastcgi;
    uwsgi_temp_path {directory}/tmp-uwsgi;
    scgi_temp_path {directory}/tmp-scgi;
    server_tokens {server_tokens};
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{https_port} ssl;
        server_name {HOST};
        ssl_certificate {pki.cert_pem};
        ssl_certificate_key {pki.key_pem};
        ssl_protocols {protocols};
        {headers}
        location = / {{ default_type text/html; return 200 "<html>votriz</html>"; }}
        location = /healthz {{ default_type application/json; return 200 '{{"status":"ok"}}'; }}
        location /api/v1/ {{ default_type application/json; return 401 '{{"error":"unauthorized"}}'; }}
        location / {{ default_type application/json; return 404 '{{"error":"not found"}}'; }}
    }}
    server {{
        listen 127.0.0.1:{http_port};
        server_name {HOST};
        location / {{ {http_location} }}
    }}
}}
"""


def wait_for_port(port: int, timeout_s: float = 10.0) -> None:
    wait_until(lambda: tcp_accepts(port), timeout_s=timeout_s, what=f"127.0.0.1:{port}")


@pytest.fixture
def nginx_factory(tmp_path: Path, pki: Pki) -> Iterator[Callable[..., NginxEdge]]:
    """Start throwaway nginx edges; each is stopped by its own pid afterwards."""
    if shutil.which("nginx") is None:
        pytest.skip("nginx is not installed")
    started: list[subprocess.Popen[bytes]] = []

    def start(*, cert: Pki | None = None, **options: object) -> NginxEdge:
        directory = tmp_path / f"nginx{len(started)}"
        directory.mkdir()
        https_port, http_port = free_port(), free_port()
        used = cert or pki
        conf = directory / "nginx.conf"
        conf.write_text(nginx_config(directory, used, https_port, http_port, **options))  # type: ignore[arg-type]
        # "user" is ignored when not root; as root nginx drops workers to nobody,
        # which needs to read nothing here (files are opened by the master).
        process = subprocess.Popen(["nginx", "-p", str(directory), "-c", str(conf)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        started.append(process)
        try:
            wait_for_port(https_port)
            wait_for_port(http_port)
        except RuntimeError:
            process.kill()
            raise RuntimeError(f"nginx did not start: {process.stderr.read() if process.stderr else ''!r}"
                               ) from None
        return NginxEdge(https_port, http_port, used, process.pid, directory)

    yield start
    for process in started:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """A TCP port that accepts connections and never says a word (nor speaks TLS)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                held.append(conn)
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    stop.set()
    thread.join(timeout=2)
    for conn in held:
        conn.close()
    server.close()


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound then released)."""
    return free_port()
