"""Peers that trickle: every network exchange ends by its policy deadline as a whole.

Client libraries bound each read, and a peer that sends one byte before every
read times out holds them for ever (issue 16: a trickling edge made
``--only transit`` take 1,087 s, three checks each meeting the plugin's
backstop). Each hostile peer here is written for the purpose and serves on
loopback from threads of the test: a TLS edge that completes its handshake and
then trickles its HTTP answer, a plain HTTP port that trickles, a TCP peer that
trickles the TLS handshake, a PostgreSQL that trickles its startup answer or a
query's answer, and a Redis that trickles a reply. Each probe call must end
within its deadline x 1.5, with a ProbeError naming the peer and the deadline.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import tomli_w
from audit_cli import REPO, run_cli
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from harness.cli import EXIT_ERROR
from harness.deadline import Deadline, Exchange, run_in_child, shutdown_socket, watchdog
from harness.health import DATABASE, REDIS, observe_health
from harness.outcomes import ProbeError
from harness.policy import Policy, TimeoutsPolicy, load_policy
from harness.probes.credentials import try_postgres, try_redis
from harness.probes.database import DatabaseProbe
from harness.probes.http import fetch_samples
from harness.probes.redis_store import redis_contents
from harness.probes.tls import scan_tls
from harness.profile import Edge, parse_profile
from harness.redaction import KnownSecrets
from harness.trickling_peers import RUN_TRICKLERS

HOST = "votriz.test"
#: Seconds between two bytes of a trickling peer: far shorter than any read timeout.
DRIP_S = 0.25
CONNECT_S = 1.0
REQUEST_S = 2.0

TIGHT_POLICY = f"""\
schema_version = 1
name = "slow-peers"
version = "test"
[timeouts]
connect_s = {CONNECT_S}
request_s = {REQUEST_S}
command_s = 30.0
run_s = 300.0
"""


@pytest.fixture(autouse=True)
def forget_trickling_peers() -> Iterator[None]:
    """Each test starts with a run memory of no trickling peer (ports are reused)."""
    RUN_TRICKLERS.forget()
    yield
    RUN_TRICKLERS.forget()


@pytest.fixture
def policy() -> Policy:
    return load_policy().model_copy(update={"timeouts": TimeoutsPolicy(
        connect_s=CONNECT_S, request_s=REQUEST_S, command_s=30.0)})


# --- hostile peers on loopback ---------------------------------------------------------------------

Handler = Callable[[socket.socket, threading.Event], None]


@pytest.fixture
def serve() -> Iterator[Callable[[Handler], int]]:
    """``serve(handler)`` listens on a loopback port and runs ``handler(conn, stopping)`` for each
    connection in its own thread until the test ends; returns the port."""
    stopping = threading.Event()
    listeners: list[socket.socket] = []

    def start(handler: Handler) -> int:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        listener.settimeout(0.2)
        listeners.append(listener)

        def accept() -> None:
            while not stopping.is_set():
                try:
                    conn, _ = listener.accept()
                except TimeoutError:
                    continue
                except OSError:
                    return
                threading.Thread(target=_run, args=(handler, conn, stopping), daemon=True).start()

        threading.Thread(target=accept, daemon=True).start()
        return int(listener.getsockname()[1])

    yield start
    stopping.set()
    for listener in listeners:
        listener.close()


def _run(handler: Handler, conn: socket.socket, stopping: threading.Event) -> None:
    try:
        handler(conn, stopping)
    except (OSError, ssl.SSLError):
        pass
    finally:
        conn.close()


def drip(send: Callable[[bytes], object], data: bytes, stopping: threading.Event) -> None:
    """Send ``data`` one byte every DRIP_S, then keep dripping filler, until the test ends."""
    index = 0
    while not stopping.wait(DRIP_S):
        send(data[index:index + 1] if index < len(data) else b"x")
        index += 1


def read_request_head(read: Callable[[int], bytes]) -> None:
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = read(4096)
        if not chunk:
            return
        head += chunk


TRICKLED_ANSWER = b"HTTP/1.1 200 OK\r\nServer: trickle\r\nX-Filler: "


def plain_trickler(conn: socket.socket, stopping: threading.Event) -> None:
    """A plain HTTP listener that trickles its answer."""
    read_request_head(conn.recv)
    drip(conn.sendall, TRICKLED_ANSWER, stopping)


def tls_trickler(context: ssl.SSLContext) -> Handler:
    """A TLS edge that completes the handshake at once, then trickles its HTTP answer."""
    def handle(conn: socket.socket, stopping: threading.Event) -> None:
        conn.settimeout(10)
        with context.wrap_socket(conn, server_side=True) as tls:
            read_request_head(tls.recv)
            drip(tls.sendall, TRICKLED_ANSWER, stopping)
    return handle


def handshake_trickler(conn: socket.socket, stopping: threading.Event) -> None:
    """A TCP peer that reads the ClientHello and trickles a TLS handshake record that never ends."""
    conn.recv(16384)
    drip(conn.sendall, b"\x16\x03\x03\x40\x00\x02\x00\x3f\xfc\x03\x03", stopping)


@pytest.fixture(scope="module")
def edge_certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for votriz.test (and 127.0.0.1): (certificate, key); the
    certificate is its own trust anchor."""
    directory = tmp_path_factory.mktemp("slow-peers-pki")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName(HOST), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_pem, key_pem = directory / "edge.pem", directory / "edge.key"
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return cert_pem, key_pem


@pytest.fixture
def trickling_edge(serve: Callable[[Handler], int], edge_certificate: tuple[Path, Path]) -> Edge:
    """An edge whose HTTPS port completes handshakes and trickles its answers, and whose HTTP
    port trickles its answers."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*edge_certificate)
    return Edge(host=HOST, address="127.0.0.1", https_port=serve(tls_trickler(context)),
                http_port=serve(plain_trickler), trust_anchor=edge_certificate[0])


def _raises_within(limit_s: float, call: Callable[[], object]) -> tuple[str, float]:
    started = time.monotonic()
    with pytest.raises(ProbeError) as raised:
        call()
    seconds = time.monotonic() - started
    assert seconds < limit_s, (seconds, str(raised.value))
    return str(raised.value), seconds


# --- the edge ------------------------------------------------------------------------------------


def test_https_samples_of_an_edge_trickling_its_answer_end_at_the_request_deadline(
        trickling_edge: Edge, policy: Policy) -> None:
    message, seconds = _raises_within(REQUEST_S * 1.5, lambda: fetch_samples(trickling_edge, policy, "https"))
    port = trickling_edge.https_port
    assert message.startswith(f"GET https://{HOST}:{port}/: the edge 127.0.0.1:{port} sent "), message
    assert message.endswith("did not finish its answer within the policy's 2 s (timeouts.request_s)"), message
    assert seconds >= REQUEST_S * 0.9


def test_http_samples_of_a_port_trickling_its_answer_end_at_the_request_deadline(
        trickling_edge: Edge, policy: Policy) -> None:
    message, _ = _raises_within(REQUEST_S * 1.5, lambda: fetch_samples(trickling_edge, policy, "http"))
    port = trickling_edge.http_port
    assert f"the edge 127.0.0.1:{port} sent " in message, message
    assert "within the policy's 2 s (timeouts.request_s)" in message, message


def test_tls_scan_of_an_edge_trickling_its_answer_ends_at_the_request_deadline(
        trickling_edge: Edge, policy: Policy) -> None:
    # The scan's preflight asks GET / as sslyze's HTTP headers command would; sslyze bounds
    # each read only, so without it the scan would last as long as the edge keeps dripping.
    message, _ = _raises_within(REQUEST_S * 1.5, lambda: scan_tls(trickling_edge, policy))
    port = trickling_edge.https_port
    assert message.startswith(f"TLS scan of {HOST} at 127.0.0.1:{port}: GET /: the edge 127.0.0.1:{port} "
                              "sent "), message
    assert message.endswith("did not finish its answer within the policy's 2 s (timeouts.request_s)"), message


def test_tls_scan_of_a_peer_trickling_the_handshake_ends_at_the_connect_deadline(
        serve: Callable[[Handler], int], policy: Policy) -> None:
    port = serve(handshake_trickler)
    edge = Edge(host=HOST, address="127.0.0.1", https_port=port)
    message, _ = _raises_within(CONNECT_S * 1.5, lambda: scan_tls(edge, policy))
    assert message.startswith(f"TLS scan of {HOST} at 127.0.0.1:{port}: the edge 127.0.0.1:{port} sent "), \
        message
    assert message.endswith("did not finish its TLS handshake within the policy's 1 s (timeouts.connect_s)"), \
        message


def test_https_samples_of_a_peer_trickling_the_handshake_end_at_the_connect_deadline(
        serve: Callable[[Handler], int], policy: Policy) -> None:
    # CPython bounds a whole TLS handshake by the socket's timeout (one deadline over all its reads).
    port = serve(handshake_trickler)
    edge = Edge(host=HOST, address="127.0.0.1", https_port=port)
    message, _ = _raises_within(CONNECT_S * 1.5, lambda: fetch_samples(edge, policy, "https"))
    assert message.startswith(f"GET https://{HOST}:{port}/: no answer within the policy's timeouts"), message


# --- the run's memory of a trickling peer ---------------------------------------------------------


def test_a_peer_that_trickled_once_is_not_asked_again_in_the_run(
        trickling_edge: Edge, policy: Policy) -> None:
    # Given the TLS scan cut the HTTPS port at the request deadline while it trickled
    port = trickling_edge.https_port
    _raises_within(REQUEST_S * 1.5, lambda: scan_tls(trickling_edge, policy))
    overrun = RUN_TRICKLERS.seen(f"127.0.0.1:{port}", "GET /")
    assert overrun is not None and overrun.seconds == REQUEST_S and overrun.key == "timeouts.request_s"
    # When the HTTPS samples and a second scan ask the same peer
    samples, samples_s = _raises_within(0.5, lambda: fetch_samples(trickling_edge, policy, "https"))
    again, again_s = _raises_within(0.5, lambda: scan_tls(trickling_edge, policy))
    # Then both end at once, naming the exchange (the same GET /), the peer, its first overrun and
    # the deadline in seconds
    remembered = (f"not asked: earlier in this run (at {overrun.at:%H:%M:%S} UTC) GET /: the edge "
                  f"127.0.0.1:{port} sent ")
    assert samples.startswith(f"GET https://{HOST}:{port}/: {remembered}"), samples
    assert again.startswith(f"TLS scan of {HOST} at 127.0.0.1:{port}: {remembered}"), again
    for message in (samples, again):
        assert ("did not finish its answer within the policy's 2 s (timeouts.request_s); asking the edge "
                f"127.0.0.1:{port} again would take the same 2 s") in message, message
    # And the plain HTTP port, another peer, is still asked (and cut at its own deadline)
    http, http_s = _raises_within(REQUEST_S * 1.5, lambda: fetch_samples(trickling_edge, policy, "http"))
    assert "not asked" not in http and http_s >= REQUEST_S * 0.9, http
    print(f"first overrun: scan; then samples {samples_s:.3f} s, scan {again_s:.3f} s, other port {http_s:.2f} s")


def test_a_silent_peer_is_not_remembered(serve: Callable[[Handler], int], policy: Policy) -> None:
    # A peer that says nothing may be restarting: it is asked again, unlike one that trickles.
    def silent(conn: socket.socket, stopping: threading.Event) -> None:
        stopping.wait(10)

    port = serve(silent)
    edge = Edge(host=HOST, address="127.0.0.1", https_port=port, http_port=port)
    _raises_within(REQUEST_S * 1.5, lambda: fetch_samples(edge, policy, "http"))
    assert RUN_TRICKLERS.first == {}
    message, seconds = _raises_within(REQUEST_S * 1.5, lambda: fetch_samples(edge, policy, "http"))
    assert "not asked" not in message and seconds >= REQUEST_S * 0.9, message


def slow_path_edge(context: ssl.SSLContext, slow_times: int = -1) -> Handler:
    """A TLS edge that answers ``/`` (and every other path) at once, with HSTS, and trickles the
    body of ``/slow`` (its first ``slow_times`` asks; -1: every one), as the review's edge did."""
    left = [slow_times]

    def handle(conn: socket.socket, stopping: threading.Event) -> None:
        conn.settimeout(10)
        with context.wrap_socket(conn, server_side=True) as tls:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = tls.recv(4096)
                if not chunk:
                    return
                head += chunk
            body = b"x" * 40
            answer = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                      b"Strict-Transport-Security: max-age=63072000; includeSubDomains\r\n"
                      b"Content-Length: 40\r\n\r\n")
            if head.split(b" ")[1] == b"/slow" and left[0] != 0:
                left[0] -= 1
                tls.sendall(answer)
                drip(tls.sendall, body, stopping)
            else:
                tls.sendall(answer + body)
    return handle


@pytest.mark.parametrize("scan_first", [False, True], ids=["samples-first", "scan-first"])
def test_a_slow_body_on_one_sampled_path_does_not_settle_the_tls_scan(
        serve: Callable[[Handler], int], edge_certificate: tuple[Path, Path], policy: Policy,
        scan_first: bool) -> None:
    # Given an edge whose handshake and GET / are healthy and whose /slow trickles its body
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*edge_certificate)
    edge = Edge(host=HOST, address="127.0.0.1", https_port=serve(slow_path_edge(context)),
                trust_anchor=edge_certificate[0], sample_paths=("/", "/slow"))
    port = edge.https_port
    # When the HTTPS samples and the TLS scan ask it, in either order (two checks' order in a run)
    first_samples = ""
    if scan_first:
        scan = scan_tls(edge, policy)
        first_samples, _ = _raises_within(REQUEST_S * 1.5, lambda: fetch_samples(edge, policy, "https"))
    else:
        first_samples, _ = _raises_within(REQUEST_S * 1.5, lambda: fetch_samples(edge, policy, "https"))
        scan = scan_tls(edge, policy)
    # Then the samples are an error naming /slow and the deadline, and the scan is done: the
    # handshake and GET / it repeats did not overrun
    assert first_samples.startswith(f"GET https://{HOST}:{port}/slow: the edge 127.0.0.1:{port} sent "), \
        first_samples
    assert scan.port == port and scan.hsts is not None and scan.certificate is not None, scan
    assert any(version.accepted for version in scan.versions), scan.versions
    # And asking the samples again ends at once on the exchange that overran
    again, again_s = _raises_within(0.5, lambda: fetch_samples(edge, policy, "https"))
    assert again.startswith(f"GET https://{HOST}:{port}/slow: not asked: earlier in this run "), again
    assert f") GET /slow: the edge 127.0.0.1:{port} sent " in again, again
    print(f"{'scan' if scan_first else 'samples'} first: scan {scan.duration_s:.2f} s, samples again "
          f"{again_s:.3f} s")


TWO_RUNS = """\
import sys
from harness.cli import main
first = main(["run", "--target", sys.argv[1], "--policy", sys.argv[2], "--report-dir", sys.argv[3],
              "--check", "transit.hsts", "--check", "transit.tls_versions", "--check", "transit.certificate"])
second = main(["run", "--target", sys.argv[1], "--policy", sys.argv[2], "--report-dir", sys.argv[4],
               "--check", "transit.hsts"])
print("exits", first, second)
"""


def test_two_runs_in_one_process_each_judge_the_edge_as_found(
        serve: Callable[[Handler], int], edge_certificate: tuple[Path, Path], tmp_path: Path) -> None:
    # Given an edge that accepts TLS 1.3 only, answers / at once and trickles /slow the first time
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_cert_chain(*edge_certificate)
    port = serve(slow_path_edge(context, slow_times=1))
    profile = tmp_path / "target.toml"
    profile.write_text(tomli_w.dumps({"name": "slow-path-edge", "edge": {
        "host": HOST, "address": "127.0.0.1", "https_port": port, "trust_anchor": str(edge_certificate[0]),
        "sample_paths": ["/", "/slow"]}}))
    policy = tmp_path / "policy.toml"
    policy.write_text(TIGHT_POLICY)
    # When one process runs hsts before the TLS checks, then hsts again (harness.cli.main twice)
    done = subprocess.run([sys.executable, "-c", TWO_RUNS, str(profile), str(policy), str(tmp_path / "r1"),
                           str(tmp_path / "r2")], capture_output=True, text=True, timeout=300, cwd=REPO)
    output = done.stdout + done.stderr
    assert "Traceback" not in output, output[-3000:]
    first, second = (_results(tmp_path / run) for run in ("r1", "r2"))
    # Then in the first run hsts is an error on /slow, and the TLS checks, whose handshake and
    # GET / were healthy, judged the edge (review finding 1)
    assert first["transit.hsts"][0] == "ERROR" and "/slow" in first["transit.hsts"][1], first
    for check in ("transit.tls_versions", "transit.certificate"):
        assert first[check][0] == "PASS", (check, first[check])
    # And the second run, against an edge now fast, asked it again and judged it (finding 2)
    assert second["transit.hsts"][0] == "PASS", second


def _results(report: Path) -> dict[str, tuple[str, str]]:
    results = json.loads((report / "results.json").read_text())["results"]
    return {r["check_id"]: (r["outcome"], r["message"]) for r in results}


# --- PostgreSQL ----------------------------------------------------------------------------------


def _pg_message(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("!I", len(body) + 4) + body


def _pg_startup(conn: socket.socket) -> None:
    """Read the client's start-up, refusing SSL and GSS encryption first."""
    while True:
        length = struct.unpack("!I", conn.recv(4, socket.MSG_WAITALL))[0]
        body = conn.recv(length - 4, socket.MSG_WAITALL)
        code = struct.unpack("!I", body[:4])[0]
        if code in (80877103, 80877104):  # SSLRequest, GSSENCRequest
            conn.sendall(b"N")
            continue
        return


PG_READY = (_pg_message(b"R", struct.pack("!I", 0))
            + _pg_message(b"S", b"server_version\x0015.0\x00")
            + _pg_message(b"S", b"client_encoding\x00UTF8\x00")
            + _pg_message(b"S", b"integer_datetimes\x00on\x00")
            + _pg_message(b"K", struct.pack("!II", 1, 2))
            + _pg_message(b"Z", b"I"))


def pg_trickling_startup(conn: socket.socket, stopping: threading.Event) -> None:
    """A PostgreSQL that trickles its answer to the start-up message."""
    _pg_startup(conn)
    drip(conn.sendall, PG_READY, stopping)


def pg_trickling_query(conn: socket.socket, stopping: threading.Event) -> None:
    """A PostgreSQL that starts a session at once and trickles its answer to the first query."""
    _pg_startup(conn)
    conn.sendall(PG_READY)
    conn.recv(65536)
    drip(conn.sendall, b"T" + struct.pack("!I", 1 << 20), stopping)


def _database_profile(port: int, tmp_path: Path) -> object:
    password = tmp_path / "password"
    password.write_text("auditor-password-of-the-test\n")
    password.chmod(0o600)
    return parse_profile(tomli_w.dumps({
        "name": "slow-db", "edge": {"host": HOST},
        "database": {"dsn": f"host=127.0.0.1 port={port} dbname=votriz user=votriz_auditor sslmode=disable",
                     "password": {"file": str(password)}}}))


def test_database_trickling_its_startup_answer_ends_at_the_connect_deadline(
        serve: Callable[[Handler], int], policy: Policy, tmp_path: Path) -> None:
    port = serve(pg_trickling_startup)
    probe = DatabaseProbe(_database_profile(port, tmp_path), policy, known_secrets=KnownSecrets())  # type: ignore[arg-type]
    # libpq takes its connect_timeout in whole seconds, at least 2: that is the deadline applied
    message, _ = _raises_within(2 * 1.5, probe.open)
    assert message.startswith(f"cannot connect to the database (host=127.0.0.1 port={port} "), message
    assert message.endswith("connection timeout expired (after 2 s: the policy's timeouts.connect_s is 1 s, "
                            "and libpq waits whole seconds, at least 2)"), message


def test_database_trickling_a_query_answer_ends_at_the_request_deadline(
        serve: Callable[[Handler], int], policy: Policy, tmp_path: Path) -> None:
    port = serve(pg_trickling_query)
    probe = DatabaseProbe(_database_profile(port, tmp_path), policy, known_secrets=KnownSecrets())  # type: ignore[arg-type]
    message, _ = _raises_within(REQUEST_S * 1.5, probe.open)
    assert message == (f"the database at 127.0.0.1:{port} did not finish answering within the policy's "
                       "2 s (timeouts.request_s); the session was closed"), message
    probe.close()


# --- Redis ---------------------------------------------------------------------------------------


def redis_trickler(conn: socket.socket, stopping: threading.Event) -> None:
    """A Redis that trickles a long reply to the first command."""
    conn.recv(65536)
    drip(conn.sendall, b"$100000\r\n", stopping)


def test_redis_trickling_a_reply_ends_at_the_request_deadline(
        serve: Callable[[Handler], int], policy: Policy) -> None:
    port = serve(redis_trickler)
    profile = parse_profile(tomli_w.dumps({"name": "slow-redis", "edge": {"host": HOST},
                                           "redis": {"host": "127.0.0.1", "port": port}}))
    message, _ = _raises_within(REQUEST_S * 1.5,
                                lambda: list(redis_contents(profile, policy, KnownSecrets())))
    assert message.startswith(f"Redis at 127.0.0.1:{port} sent "), message
    assert message.endswith("did not finish its answer within the policy's 2 s (timeouts.request_s)"), message


def _returns_within(limit_s: float, call: Callable[[], str]) -> tuple[str, float]:
    started = time.monotonic()
    answer = call()
    seconds = time.monotonic() - started
    assert seconds < limit_s, (seconds, answer)
    return answer, seconds


def test_a_redis_login_attempt_at_a_redis_trickling_its_reply_ends_at_its_deadline(
        serve: Callable[[Handler], int]) -> None:
    # The password-rotation checks try a password with AUTH and PING under timeouts.connect_s.
    port = serve(redis_trickler)
    answer, seconds = _returns_within(CONNECT_S * 1.5, lambda: try_redis("127.0.0.1", port,
                                                                         "a-password-of-the-test", CONNECT_S))
    assert answer.startswith(f"connection failed: Redis at 127.0.0.1:{port} sent "), answer
    assert answer.endswith("did not finish its answer within the policy's 1 s (timeouts.connect_s)"), answer
    assert "a-password-of-the-test" not in answer and seconds >= CONNECT_S * 0.9


def test_a_database_login_attempt_at_a_database_trickling_its_startup_answer_ends_at_its_deadline(
        serve: Callable[[Handler], int]) -> None:
    port = serve(pg_trickling_startup)
    dsn = f"host=127.0.0.1 port={port} dbname=votriz sslmode=disable"
    # libpq takes its connect_timeout in whole seconds, at least 2: that is the deadline applied
    answer, _ = _returns_within(2 * 1.5, lambda: try_postgres(dsn, "votriz", "a-password-of-the-test",
                                                               CONNECT_S))
    assert answer == (f"connection failed: the database at 127.0.0.1:{port} did not complete the login "
                      "(after 2 s: the policy's timeouts.connect_s is 1 s, and libpq waits whole seconds, "
                      "at least 2)"), answer


def test_health_of_a_redis_and_a_database_trickling_their_answers_ends_at_the_request_deadline(
        serve: Callable[[Handler], int], policy: Policy, tmp_path: Path) -> None:
    # Given a database that trickles its start-up answer and a Redis that trickles its reply
    db_port, redis_port = serve(pg_trickling_startup), serve(redis_trickler)
    profile = _database_profile(db_port, tmp_path).model_copy(  # type: ignore[attr-defined]
        update={"redis": parse_profile(tomli_w.dumps({
            "name": "r", "edge": {"host": HOST}, "redis": {"host": "127.0.0.1", "port": redis_port}})).redis})
    # When the health is observed with a 2 s request deadline
    started = time.monotonic()
    seen = observe_health(profile, policy)
    seconds = time.monotonic() - started
    # Then both are unavailable, each naming what it did and the deadline, asked in parallel
    by_name = {part.name: part for part in seen.parts}
    assert seconds < REQUEST_S * 1.5, (seconds, seen.as_evidence())
    assert not by_name[DATABASE].available and by_name[DATABASE].reason == (
        "the database did not complete the connection (the policy's 2 s, timeouts.request_s)")
    assert not by_name[REDIS].available and by_name[REDIS].where == f"127.0.0.1:{redis_port}"
    assert by_name[REDIS].reason.startswith("Redis sent "), by_name[REDIS].reason
    assert by_name[REDIS].reason.endswith("did not finish its answer within the policy's 2 s "
                                          "(timeouts.request_s)"), by_name[REDIS].reason


# --- the whole in-transit area through the command line ------------------------------------------


def _edge_profile(path: Path, name: str, https_port: int, http_port: int, anchor: Path) -> Path:
    path.write_text(tomli_w.dumps({
        "name": name, "edge": {"host": HOST, "address": "127.0.0.1", "https_port": https_port,
                               "http_port": http_port, "trust_anchor": str(anchor)}}))
    return path


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_trickling_edge_ends_every_transit_check_as_an_error_within_seconds(
        trickling_edge: Edge, tmp_path: Path) -> None:
    # Given a profile whose edge trickles every answer on both ports, and a 2 s request deadline
    anchor = trickling_edge.trust_anchor
    assert anchor is not None
    profile = _edge_profile(tmp_path / "target.toml", "trickling-edge", trickling_edge.https_port,
                            trickling_edge.http_port or 0, anchor)
    policy = tmp_path / "policy.toml"
    policy.write_text(TIGHT_POLICY)
    # And the same run against an edge whose ports refuse at once: the command's own cost
    # (start-up, collection, report), which no edge can shorten
    closed = _edge_profile(tmp_path / "closed.toml", "closed-edge", _closed_port(), _closed_port(), anchor)
    baseline = run_cli(closed, tmp_path / "closed", policy, only=("transit",), env={}, limit_s=300)
    # When the in-transit checks run through the command line
    run = run_cli(profile, tmp_path / "r", policy, only=("transit",), env={}, limit_s=300)
    # Then every check that asks the edge is ERROR naming the edge and the deadline
    assert run.returncode == EXIT_ERROR, run.output[-3000:]
    https = f"the edge 127.0.0.1:{trickling_edge.https_port} sent "
    http = f"the edge 127.0.0.1:{trickling_edge.http_port} sent "
    for check, peer in (("transit.tls_versions", https), ("transit.certificate", https),
                        ("transit.hsts", https), ("transit.security_headers", https),
                        ("transit.http_redirect_only", http)):
        outcome, message = run.results[check]
        assert outcome == "ERROR", (check, outcome, message)
        assert peer in message and "within the policy's 2 s (timeouts.request_s)" in message, (check, message)
    assert "PASS" not in {outcome for outcome, _ in run.results.values()}, run.results
    # And the checks after the first overrun of a port did not ask it again
    for check in ("transit.hsts", "transit.security_headers"):
        assert "not asked: earlier in this run" in run.message(check), run.message(check)
        assert run.durations[check] < 0.5 * REQUEST_S, (check, run.durations[check])
    # And the whole area ended within 3 x request_s (issue 16's bound): the time its checks took,
    # fixtures included, as the run recorded it
    bound = 3 * REQUEST_S
    checks_s = sum(run.durations.values())
    print(f"--only transit against a trickling edge: {run.seconds:.1f} s wall for {len(run.results)} checks, "
          f"{checks_s:.1f} s in checks, {baseline.seconds:.1f} s for the same run against refusing ports "
          f"(bound {bound:g} s); per check: {run.durations}")
    assert checks_s <= bound, (checks_s, run.durations)
    # And the command took no more than that beyond its own cost against refusing ports (nothing
    # waits on the trickling peer at the end). The command's own cost varies by seconds between two
    # runs on a loaded machine (3.96-5.67 s at load 10), hence twice the bound here.
    assert run.seconds - baseline.seconds <= 2 * bound, (run.seconds, baseline.seconds)


# --- the primitives ------------------------------------------------------------------------------


def test_an_exchange_says_what_the_peer_sent_and_the_policy_limit() -> None:
    exchange = Exchange("the edge 127.0.0.1:8443", Deadline(2.0, "timeouts.request_s", started=0.0),
                        received=14, expired_at_s=2.04)
    assert exchange.expired_sentence() == ("the edge 127.0.0.1:8443 sent 14 bytes in 2.0 s and did not finish "
                                           "its answer within the policy's 2 s (timeouts.request_s)")
    silent = Exchange("Redis at 127.0.0.1:6379", Deadline(1.0, "timeouts.request_s", started=0.0))
    assert silent.expired_sentence() == "Redis at 127.0.0.1:6379 did not answer within the policy's 1 s " \
                                        "(timeouts.request_s)"


def test_a_deadline_clamps_every_wait_to_the_time_left() -> None:
    deadline = Deadline(10.0, "timeouts.request_s")
    assert 9 < deadline.clamp(None) <= 10
    assert deadline.clamp(0.5) == 0.5
    assert Deadline(1.0, "k", started=time.monotonic() - 5).clamp(3.0) == 0.0
    assert Deadline(1.0, "k", started=time.monotonic() - 5).expired


def test_the_watchdog_acts_at_the_deadline_and_not_after_the_block_ended() -> None:
    acted: list[float] = []
    with watchdog(Deadline(0.2, "k"), lambda: acted.append(time.monotonic())) as watch:
        time.sleep(0.5)
    assert watch.fired and len(acted) == 1
    with watchdog(Deadline(0.2, "k"), lambda: acted.append(time.monotonic())) as quiet:
        pass
    time.sleep(0.4)
    assert not quiet.fired and len(acted) == 1


def test_a_socket_shut_down_by_the_watchdog_ends_a_blocked_read() -> None:
    left, right = socket.socketpair()
    with left, right:
        started = time.monotonic()
        with watchdog(Deadline(0.3, "k"), lambda: shutdown_socket(left.fileno())) as watch:
            assert left.recv(10) == b""
        assert watch.fired and time.monotonic() - started < 1.0


def _sleep_then_answer(seconds: float) -> str:
    time.sleep(seconds)
    return "answered"


def _refuse() -> None:
    raise ProbeError("the child refused")


def test_run_in_child_kills_a_call_at_its_deadline_and_passes_answers_and_errors_back() -> None:
    assert run_in_child(_sleep_then_answer, (0.0,), Deadline(20.0, "k"), what="quick") == "answered"
    with pytest.raises(ProbeError, match=r"^the child refused$"):
        run_in_child(_refuse, (), Deadline(20.0, "k"), what="refusing")
    started = time.monotonic()
    with pytest.raises(ProbeError) as raised:
        run_in_child(_sleep_then_answer, (60.0,), Deadline(1.0, "timeouts.command_s"), what="a slow call")
    assert str(raised.value) == "a slow call did not finish within the policy's 1 s (timeouts.command_s)"
    assert time.monotonic() - started < 1.5 + 5  # the child is killed, not awaited
