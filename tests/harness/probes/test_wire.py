"""The wire capture's parsers and flow book on crafted bytes, and one real capture on loopback."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.probes import wire
from harness.probes.flow_start import classify_flow_start, parse_client_hello, parse_request_line
from harness.probes.wire import (
    ETH_P_IP,
    ETH_P_IPV6,
    TCP_ACK,
    TCP_SYN,
    ApiProcesses,
    FlowBook,
    Segment,
    SocketTable,
    WireCapture,
    _proc_address,
    capture_flows,
    parse_segment,
    watching_the_wire,
)


def client_hello(server_name: str | None) -> bytes:
    """The ClientHello CPython's ssl module really sends for ``server_name``."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


ANTHROPIC_HELLO = client_hello("api.anthropic.com")


# --- ClientHello and request line -------------------------------------------------------------

def test_a_real_client_hello_names_its_server() -> None:
    hello = parse_client_hello(client_hello("api.anthropic.com"))
    assert hello is not None and hello.server_name == "api.anthropic.com" and hello.complete


def test_a_client_hello_for_an_ip_address_names_nothing() -> None:
    # CPython sends no server_name extension for an IP address.
    start = classify_flow_start(client_hello("127.0.0.1"))
    assert start.kind == "tls-client-hello" and start.server_name is None and start.note == ""


def test_a_client_hello_split_over_two_records_is_joined() -> None:
    data = client_hello("api.resend.com")
    body = data[5:]
    split = (data[:3] + struct.pack("!H", 40) + body[:40]
             + data[:3] + struct.pack("!H", len(body) - 40) + body[40:])
    assert parse_client_hello(split) == parse_client_hello(data)


def test_a_client_hello_cut_short_is_still_one_but_says_so() -> None:
    start = classify_flow_start(client_hello("api.anthropic.com")[:60])
    assert start.kind == "tls-client-hello" and start.server_name is None
    assert start.note == "the ClientHello was cut short"


@pytest.mark.parametrize(("data", "text"), [
    (b"POST /anthropic/v1/messages?key=sk-ant-secret HTTP/1.1\r\nHost: x\r\n\r\n",
     "POST /anthropic/v1/messages"),
    (b"GET / HTTP/1.0\n\n", "GET /"),
    (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "PRI *"),
])
def test_a_plaintext_request_is_method_and_path_only(data: bytes, text: str) -> None:
    start = classify_flow_start(data)
    assert start.kind == "http-request" and start.request == text
    assert "secret" not in repr(start)


@pytest.mark.parametrize(("data", "kind", "note"), [
    (b"\x00\x00\x00\x08\x04\xd2\x16\x2f", "other", "PostgreSQL SSLRequest"),
    (b"\x00\x00\x00\x50\x00\x03\x00\x00user\x00", "other", "PostgreSQL startup message (no TLS)"),
    (b"*2\r\n$4\r\nAUTH\r\n$8\r\npassword\r\n", "other", "Redis protocol (RESP)"),
    (b"\x17\x03\x03\x00\x20" + b"\x00" * 32, "tls-records", "TLS records, but no ClientHello first"),
    (b"", "no-payload", ""),
    (b"hello world\r\n", "other", "13 bytes, neither a TLS record nor an HTTP request"),
])
def test_other_starts_are_described_without_their_bytes(data: bytes, kind: str, note: str) -> None:
    start = classify_flow_start(data)
    assert (start.kind, start.note) == (kind, note)
    assert "password" not in repr(start)


@settings(deadline=None)
@given(st.binary(max_size=2048))
def test_the_parsers_never_crash(data: bytes) -> None:
    classify_flow_start(data)
    classify_flow_start(data, began_in_capture=False)
    parse_request_line(data)
    parse_segment(data, ETH_P_IP)
    parse_segment(data, ETH_P_IPV6)


@settings(deadline=None)  # two shared cores: a slow example is not a failure
@given(st.integers(min_value=5, max_value=600), st.binary(min_size=1, max_size=64))
def test_a_mangled_client_hello_never_crashes(cut: int, noise: bytes) -> None:
    data = ANTHROPIC_HELLO
    mangled = data[:cut] + noise + data[cut + len(noise):]
    start = classify_flow_start(mangled)
    assert start.kind in ("tls-client-hello", "tls-records", "other")


# --- packets and flows ------------------------------------------------------------------------

def ipv4_tcp(source: str, sport: int, destination: str, dport: int, flags: int, seq: int,
             payload: bytes = b"") -> bytes:
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, flags, 65535, 0, 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0, 64, 6, 0,
                     socket.inet_aton(source), socket.inet_aton(destination))
    return ip + tcp


def test_an_ipv4_segment_is_parsed() -> None:
    segment = parse_segment(ipv4_tcp("10.0.0.2", 40000, "10.0.0.9", 443, TCP_SYN, 7), ETH_P_IP)
    assert segment == Segment("10.0.0.2:40000", "10.0.0.9:443", TCP_SYN, 7, b"")


def test_proc_net_tcp_addresses_are_read_in_host_order() -> None:
    assert _proc_address("0100007F:1F90") == "127.0.0.1:8080"
    assert _proc_address("00000000000000000000000001000000:0050") == "[::1]:80"


class FixedTable(SocketTable):
    def refresh(self) -> None:
        self.read_at = time.monotonic()


def book_with_api_client(client: str, server: str) -> FlowBook:
    table = FixedTable((1,))
    table.connected = {(client, server)}
    return FlowBook(table)


def test_the_api_flow_keeps_its_first_bytes_in_sequence_order() -> None:
    # Given the API's client socket 10.0.0.2:40000 -> 10.0.0.9:443 and a ClientHello in two segments
    book = book_with_api_client("10.0.0.2:40000", "10.0.0.9:443")
    hello = client_hello("api.anthropic.com")
    packets = [
        Segment("10.0.0.2:40000", "10.0.0.9:443", TCP_SYN, 1000, b""),
        Segment("10.0.0.9:443", "10.0.0.2:40000", TCP_SYN | TCP_ACK, 5000, b""),
        Segment("10.0.0.2:40000", "10.0.0.9:443", TCP_ACK, 1001 + 100, hello[100:]),
        Segment("10.0.0.2:40000", "10.0.0.9:443", TCP_ACK, 1001, hello[:100]),
        Segment("10.0.0.9:443", "10.0.0.2:40000", TCP_ACK, 5001, b"\x16\x03\x03server"),
    ]
    # when they arrive out of order and the flow is attributed after the first packet,
    book.add(packets[0], 1.0)
    book.attribute()
    for moment, packet in enumerate(packets[1:], start=2):
        book.add(packet, float(moment))
    # then the flow is the API's, its start the whole ClientHello, the server's bytes ignored.
    (flow,) = book.observed()
    assert (flow.client, flow.server, flow.began_in_capture) == ("10.0.0.2:40000", "10.0.0.9:443", True)
    assert flow.start.server_name == "api.anthropic.com"
    assert flow.client_bytes == len(hello) and (flow.first_payload_at, flow.last_payload_at) == (3.0, 4.0)


def test_other_processes_flows_are_counted_not_followed() -> None:
    book = book_with_api_client("10.0.0.2:40000", "10.0.0.9:443")
    book.add(Segment("10.0.0.7:5000", "10.0.0.9:443", TCP_SYN, 1, b""), 1.0)
    book.attribute()
    book.add(Segment("10.0.0.7:5000", "10.0.0.9:443", TCP_ACK, 2, b"GET / HTTP/1.1\r\n\r\n"), 2.0)
    assert book.observed() == () and book.other_flows == 1


def test_a_flow_begun_before_the_capture_reports_its_plaintext_requests() -> None:
    book = book_with_api_client("10.0.0.2:40000", "10.0.0.9:80")
    book.add(Segment("10.0.0.2:40000", "10.0.0.9:80", TCP_ACK, 77, b"POST /resend/emails HTTP/1.1\r\n\r\n"), 1.0)
    book.attribute()
    book.add(Segment("10.0.0.2:40000", "10.0.0.9:80", TCP_ACK, 200, b"GET /x?token=1 HTTP/1.1\r\n\r\n"), 2.0)
    (flow,) = book.observed()
    assert not flow.began_in_capture and flow.start.kind == "http-request"
    assert flow.requests == ("POST /resend/emails", "GET /x")


# --- a real capture on loopback ---------------------------------------------------------------

HOLDING_CLIENT = """
import socket, sys, time
sys.stdin.readline()
plain = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
plain.sendall(b"POST /anthropic/v1/messages?key=k HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
tls = socket.create_connection(("127.0.0.1", int(sys.argv[2])))
tls.sendall(bytes.fromhex(sys.argv[3]))
time.sleep(1.5)
"""


def test_a_real_capture_follows_only_the_api_processes_flows() -> None:
    # Given two listeners on loopback, the harness's own connection to one of them, and an "API"
    # process that sends a plaintext request to one and a ClientHello to the other,
    servers = [socket.create_server(("127.0.0.1", 0)) for _ in range(2)]
    ports = [server.getsockname()[1] for server in servers]
    hello = client_hello("api.resend.com").hex()
    api = subprocess.Popen([sys.executable, "-c", HOLDING_CLIENT, str(ports[0]), str(ports[1]), hello],
                           stdin=subprocess.PIPE)
    try:
        target = ApiProcesses("test client", (api.pid,), Path(f"/proc/{api.pid}/ns/net"))
        # when the capture runs in its namespace while they talk,
        with watching_the_wire(target, 30.0) as watch:
            assert api.stdin is not None
            api.stdin.write(b"go\n")
            api.stdin.close()
            ours = socket.create_connection(("127.0.0.1", ports[0]))
            ours.sendall(b"GET /harness HTTP/1.1\r\n\r\n")
            api.wait(timeout=20)
            ours.close()
    finally:
        api.kill()
        for server in servers:
            server.close()
    # then exactly the API's two flows are followed, each classified.
    assert watch.capture is not None
    starts = {flow.server: flow.start for flow in watch.capture.flows}
    assert set(starts) == {f"127.0.0.1:{ports[0]}", f"127.0.0.1:{ports[1]}"}, watch.capture
    assert starts[f"127.0.0.1:{ports[0]}"].request == "POST /anthropic/v1/messages"
    assert starts[f"127.0.0.1:{ports[1]}"].server_name == "api.resend.com"
    assert watch.capture.dropped == 0


@contextlib.contextmanager
def _held_capture(monkeypatch: pytest.MonkeyPatch, target: ApiProcesses) -> Iterator[list[WireCapture]]:
    """A capture of ``target`` run here, in a thread, held back from its socket until the block
    ends: the block makes traffic, then the stop is sent and the capture let go, so that it finds
    the stop and the packets waiting together. Yields the list its capture lands in."""
    held, real_select = threading.Event(), wire.select.select

    def held_back(*args: Any) -> Any:
        held.wait(20)
        return real_select(*args)

    monkeypatch.setattr(wire.select, "select", held_back)
    ours, theirs = multiprocessing.Pipe(duplex=True)
    result: list[WireCapture] = []
    capture = threading.Thread(target=lambda: result.append(capture_flows(target, 30.0, theirs)))
    try:
        capture.start()
        assert ours.recv() == "reading"
        yield result
        ours.send("stop")
    finally:
        held.set()
        capture.join(20)


def test_packets_queued_when_the_stop_comes_are_still_read(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a capture (run here, in a thread) held back from its socket while an "API" process
    # sends a plaintext request and a ClientHello, and the stop already on its control pipe by
    # the time it looks again (a loaded machine: the reviewer saw the child stop at the first
    # control message and lose what the kernel still held)
    servers = [socket.create_server(("127.0.0.1", 0)) for _ in range(2)]
    ports = [server.getsockname()[1] for server in servers]
    api = subprocess.Popen([sys.executable, "-c", HOLDING_CLIENT, str(ports[0]), str(ports[1]),
                            client_hello("api.resend.com").hex()], stdin=subprocess.PIPE)
    target = ApiProcesses("test client", (api.pid,), Path(f"/proc/{api.pid}/ns/net"))
    try:
        with _held_capture(monkeypatch, target) as result:
            assert api.stdin is not None
            api.stdin.write(b"go\n")
            api.stdin.close()
            time.sleep(0.5)  # both sent; the client holds its connections open 1.5 s
        # When the capture looks again, the stop and the packets both waiting
    finally:
        api.kill()
        for server in servers:
            server.close()
    # Then it read them before stopping: both flows followed
    (seen,) = result
    starts = {flow.server: flow.start for flow in seen.flows}
    assert starts[f"127.0.0.1:{ports[0]}"].request == "POST /anthropic/v1/messages", seen
    assert starts[f"127.0.0.1:{ports[1]}"].server_name == "api.resend.com"


def test_a_flow_through_an_http_proxy_is_judged_by_what_the_tunnel_carries() -> None:
    connect = b"CONNECT api.anthropic.com:443 HTTP/1.1\r\nHost: api.anthropic.com:443\r\n\r\n"
    tls = classify_flow_start(connect + client_hello("api.anthropic.com"))
    assert (tls.kind, tls.server_name) == ("tls-client-hello", "api.anthropic.com")
    assert tls.note == "through an HTTP proxy (CONNECT api.anthropic.com:443)"
    plain = classify_flow_start(connect + b"POST /v1/messages HTTP/1.1\r\n\r\n")
    assert (plain.kind, plain.request) == ("http-request", "POST /v1/messages")
    assert classify_flow_start(connect).kind == "other"


def test_connect_inside_connect_is_not_followed_further() -> None:
    nested = b"CONNECT a:1 HTTP/1.1\r\n\r\n" * 2000
    start = classify_flow_start(nested)
    assert (start.kind, start.request) == ("http-request", "CONNECT a:1")


@pytest.mark.parametrize(("drain_s", "lost"), [(0.0, True), (5.0, False)])
def test_packets_still_queued_when_the_drain_runs_out_of_time_count_as_lost(
        monkeypatch: pytest.MonkeyPatch, drain_s: float, lost: bool) -> None:
    # Given a capture told to stop with a flow's packets queued, read one at a time, and no time
    # to drain them (or enough)
    monkeypatch.setattr(wire, "DRAIN_S", drain_s)
    monkeypatch.setattr(wire, "READ_BATCH", 1)
    server = socket.create_server(("127.0.0.1", 0))
    target = ApiProcesses("test", (os.getpid(),), Path("/proc/self/ns/net"))
    try:
        with _held_capture(monkeypatch, target) as result:
            client = socket.create_connection(("127.0.0.1", server.getsockname()[1]))
            client.sendall(b"GET / HTTP/1.1\r\n\r\n")
            time.sleep(0.2)
        client.close()
    finally:
        server.close()
    # Then a queue left unread is lost packets (the outbound check's ERROR), never a clean
    # capture; a queue read to its end is not
    (seen,) = result
    assert (seen.dropped >= 1) is lost and (seen.packets >= 1 or lost)


def test_a_kept_alive_flow_is_active_only_when_it_sent() -> None:
    from harness.probes import wire

    # Given a flow that sent at 1.00-1.01 s and again at 2.00 s, silent between
    flow = wire._Flow("10.0.0.2:40000", "10.0.0.3:443")
    for at in (1.00, 1.01, 2.00):
        flow.add(wire.Segment("10.0.0.2:40000", "10.0.0.3:443", 0x18, 1, b"x"), at)
    seen = flow.observed()
    # Then it was active in either burst, not in the pause (a call made then did not use it)
    assert seen.bursts == ((1.00, 1.01), (2.00, 2.00))
    assert seen.active_between(1.005, 1.5) and seen.active_between(1.9, 2.1)
    assert not seen.active_between(1.2, 1.9)
    # And a flow sending without end keeps a bounded number of bursts
    busy = wire._Flow("10.0.0.2:40001", "10.0.0.3:443")
    for n in range(3 * wire.MAX_BURSTS):
        busy.add(wire.Segment("10.0.0.2:40001", "10.0.0.3:443", 0x18, 1, b"x"), float(n))
    bursts = busy.observed().bursts
    assert len(bursts) == wire.MAX_BURSTS and bursts[-1] == (wire.MAX_BURSTS - 1.0, 3.0 * wire.MAX_BURSTS - 1)
