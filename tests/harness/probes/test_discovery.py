"""Discovery for ``votriz-audit init``: real sockets, real TLS servers, real processes in /proc,
the real Docker engine (absent, and asked for a project it does not run)."""

from __future__ import annotations

import contextlib
import datetime as dt
import http.server
import os
import socket
import socketserver
import ssl
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from private_ca import leaf_for, new_ca

from harness.probes import discovery
from harness.probes.discovery import BindMount, DiscoveryError

UNIX_TABLE = """Num       RefCount Protocol Flags    Type St Inode Path
0000000007d92ca1: 00000002 00000000 00010000 0001 01 106420 /run/p11/sock
000000008c63fcc6: 00000003 00000000 00000000 0001 03 107657 /run/p11-audit/sock
00000000562139bc: 00000002 00000000 00010000 0001 01 109115 /var/run/votriz-pg/.s.PGSQL.5432
0000000011111111: 00000002 00000000 00010000 0001 01 109116 @abstract
garbage line
"""


def test_listening_unix_paths_keeps_only_listening_named_sockets() -> None:
    # A connected socket (flags 0), an abstract one and a garbled line are not listeners on a path.
    assert discovery.listening_unix_paths(UNIX_TABLE) == {106420: "/run/p11/sock",
                                                          109115: "/var/run/votriz-pg/.s.PGSQL.5432"}


def test_unix_listeners_of_a_real_process_name_the_path_and_its_command() -> None:
    # Given this process listening on a unix socket and holding a connected (not listening) one,
    folder = Path(tempfile.mkdtemp(prefix="disc-", dir="/tmp"))
    server, client = socket.socket(socket.AF_UNIX), socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(folder / "sock"))
        server.listen(1)
        client.connect(str(folder / "sock"))
        # when its tree's listeners are read from /proc,
        found = discovery.unix_listeners(os.getpid())
        # then the listening path is there, with this process's command name.
        command = Path(f"/proc/{os.getpid()}/comm").read_text().strip()
        assert (str(folder / "sock"), command) in found
    finally:
        client.close()
        server.close()
        (folder / "sock").unlink()
        folder.rmdir()


# --- the edge: a real TLS server with a private CA ---------------------------------------------

def _pem(cert: object) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def tls_edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int, Path]]:
    """A TLS server for edge.votriz.test signed by a private CA whose PEM sits in ``pki/``, beside a
    decoy CA of the same name that did not sign it; and a plain HTTP server. (https, http, pki)."""
    pki = tmp_path_factory.mktemp("pki")
    now = dt.datetime.now(dt.UTC)
    ca, ca_key = new_ca("Edge Test CA", now - dt.timedelta(days=1))
    decoy, _ = new_ca("Edge Test CA", now - dt.timedelta(days=1))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = leaf_for("edge.votriz.test", ca.subject, key.public_key(), now - dt.timedelta(days=1),
                    now + dt.timedelta(days=30)).sign(ca_key, hashes.SHA256())
    (pki / "a-decoy.pem").write_bytes(_pem(decoy))
    (pki / "ca.pem").write_bytes(_pem(ca))
    (pki / "edge.pem").write_bytes(_pem(leaf))
    (pki / "edge.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                     serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki / "edge.pem", pki / "edge.key")

    class Handshake(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            with contextlib.suppress(OSError, ssl.SSLError), \
                    context.wrap_socket(self.request, server_side=True) as tls:
                tls.settimeout(2)
                tls.recv(1)

    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:
            self.send_response(301)
            self.send_header("Location", "https://edge.votriz.test/")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    tls_server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handshake)
    plain = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    for server in (tls_server, plain):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield tls_server.server_address[1], plain.server_address[1], pki
    finally:
        for server in (tls_server, plain):
            server.shutdown()
            server.server_close()


def test_find_edge_reads_names_from_the_handshake_and_the_ca_that_verifies_it(tls_edge) -> None:
    https, http_port, pki = tls_edge
    closed = socket.create_server(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    # Given candidate ports of one owner (a closed one, the plain HTTP one, the TLS one),
    candidates = [("edge", "127.0.0.1", closed_port), ("edge", "127.0.0.1", http_port),
                  ("edge", "127.0.0.1", https)]
    # when the edge is looked for, with the edge certificate's folder as the place for its CA,
    edge = discovery.find_edge(candidates, [pki / "edge.pem", pki], timeout_s=3)
    # then the TLS port is the edge, the plain one its HTTP port, and the CA that signed it (not
    # the decoy of the same name) is its trust anchor.
    assert edge is not None and edge.owner == "edge" and edge.https_port == https
    assert edge.http_port == http_port
    # (asked lowest first, port 80 before any, until one answered: the closed one only if lower)
    assert edge.http_ports_tried == ((closed_port, http_port) if closed_port < http_port else (http_port,))
    assert edge.certificate is not None
    assert edge.certificate.names == ("edge.votriz.test",)  # DNS names only (its SAN IP is not one)
    assert edge.certificate.system_trusted is False
    assert edge.certificate.trust_anchor == pki / "ca.pem"


def test_find_edge_without_the_ca_names_no_anchor_and_without_tls_finds_no_edge(tls_edge) -> None:
    https, http_port, pki = tls_edge
    elsewhere = Path(tempfile.mkdtemp(prefix="disc-none-", dir="/tmp"))
    try:
        (elsewhere / "a-decoy.pem").write_bytes((pki / "a-decoy.pem").read_bytes())
        edge = discovery.find_edge([("edge", "127.0.0.1", https)], [elsewhere], timeout_s=3)
        assert edge is not None and edge.certificate is not None
        assert edge.certificate.trust_anchor is None and not edge.certificate.system_trusted
        assert edge.http_port is None and edge.http_ports_tried == ()
        assert discovery.find_edge([("edge", "127.0.0.1", http_port)], [pki], timeout_s=3) is None
    finally:
        (elsewhere / "a-decoy.pem").unlink()
        elsewhere.rmdir()


def test_connect_address_maps_any_address_to_loopback() -> None:
    assert discovery.connect_address("0.0.0.0") == "127.0.0.1"
    assert discovery.connect_address("::") == "::1"
    assert discovery.connect_address("127.0.0.1") == "127.0.0.1"


# --- mounts -----------------------------------------------------------------------------------

def test_log_and_config_mounts_and_secrets_left_out(tmp_path: Path) -> None:
    for name in ("logs/api", "state", "conf", "secrets", "empty"):
        (tmp_path / name).mkdir(parents=True)
    (tmp_path / "state" / "worker.log").write_text("x")
    (tmp_path / "conf" / "nginx.conf").write_text("x")
    (tmp_path / "api.toml").write_text("x")
    (tmp_path / "secrets" / "redis.conf").write_text("requirepass x")
    mounts = [BindMount(tmp_path / "logs/api", "/var/lib/votriz/logs", True),
              BindMount(tmp_path / "state", "/var/lib/state", True),
              BindMount(tmp_path / "empty", "/var/lib/empty", True),
              BindMount(tmp_path / "conf", "/etc/votriz", False),
              BindMount(tmp_path / "api.toml", "/var/lib/votriz/api.toml", False),
              BindMount(tmp_path / "secrets" / "redis.conf", "/run/secrets/redis.conf", False)]
    # A writable dir named *log* or holding *.log is a log dir; an empty writable one is not.
    assert discovery._log_dirs(mounts) == [tmp_path / "logs/api", tmp_path / "state"]
    # Read-only configuration is searched for keys; a secrets file (holding a password by design) is not.
    assert discovery._config_paths(mounts) == [tmp_path / "conf", tmp_path / "api.toml"]


# --- the engine --------------------------------------------------------------------------------

def test_no_engine_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///tmp/no-such-docker-engine.sock")
    started = time.monotonic()
    with pytest.raises(DiscoveryError) as caught:
        discovery.discover_compose("votriz", timeout_s=3)
    assert time.monotonic() - started < 10
    message = str(caught.value)
    assert "\n" not in message and "no-such-docker-engine.sock" in message
    assert "does not exist" in message


@pytest.mark.integration
def test_no_such_project_names_the_label_and_what_runs() -> None:
    try:
        import docker

        docker.from_env(timeout=5).ping()
    except Exception as exc:  # no engine here: this test is about a running one
        pytest.skip(f"no Docker engine: {exc}")
    with pytest.raises(DiscoveryError) as caught:
        discovery.discover_compose("no-such-project-h18a", timeout_s=10)
    message = str(caught.value)
    assert message.startswith("no running container is labelled "
                              "com.docker.compose.project=no-such-project-h18a (")
    assert "\n" not in message
