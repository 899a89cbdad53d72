"""The /proc listener probe on processes started here: a plain HTTP server with a child, a
mute listener, and a throwaway nginx edge."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from checks.transit.origin_not_plaintext import origin_not_plaintext_verdict
from harness.outcomes import Outcome, ProbeError
from harness.policy import Policy
from harness.probes.listeners import (
    listening_sockets,
    loopback_target,
    parse_proc_net_tcp,
    process_tree,
    survey_origin,
)
from harness.profile import TargetProfile

from .conftest import HOST, NginxEdge, free_port, wait_for_port

PROC_NET_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1111 1 0
   1: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2222 1 0
   2: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 3333 1 0
"""
PROC_NET_TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:1F91 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4444 1 0
   1: 00000000000000000000000000000000:01BB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5555 1 0
"""


def test_parse_proc_net_tcp_keeps_listeners_only() -> None:
    assert parse_proc_net_tcp(PROC_NET_TCP) == {1111: ("127.0.0.1", 8080), 2222: ("0.0.0.0", 80)}
    assert parse_proc_net_tcp(PROC_NET_TCP6) == {4444: ("::1", 8081), 5555: ("::", 443)}


@pytest.mark.parametrize(("address", "target"), [
    ("0.0.0.0", "127.0.0.1"), ("::", "::1"), ("127.0.0.5", "127.0.0.5"), ("::1", "::1"),
    ("::ffff:127.0.0.1", "127.0.0.1"), ("10.1.2.3", None),
])
def test_loopback_target(address: str, target: str | None) -> None:
    assert loopback_target(address) == target


# A parent that serves plain HTTP from a child process, as a pre-forking server would.
SERVER = textwrap.dedent("""
    import http.server, os, socket, sys, time
    port, mode = int(sys.argv[1]), sys.argv[2]
    if mode == "http":
        server = http.server.HTTPServer(("127.0.0.1", port), http.server.SimpleHTTPRequestHandler)
        if os.fork() == 0:
            server.serve_forever()
        else:
            os.wait()
    else:
        sock = socket.socket(); sock.bind(("127.0.0.1", port)); sock.listen(4)
        time.sleep(600)
""")


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[[str], tuple[int, Path]]]:
    """Start a listener process of ours ('http' or 'mute'); returns its port and pid file."""
    started: list[subprocess.Popen[bytes]] = []

    def start(mode: str) -> tuple[int, Path]:
        port = free_port()
        process = subprocess.Popen([sys.executable, "-c", SERVER, str(port), mode], cwd=tmp_path,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started.append(process)
        pid_file = tmp_path / f"{mode}.pid"
        pid_file.write_text(f"{process.pid}\n")
        wait_for_port(port)
        return port, pid_file

    yield start
    for process in started:
        # The forked child is ours too: end it by its pid, found under our own process.
        for pid in process_tree(process.pid)[1:]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        process.terminate()
        process.wait(timeout=5)


def profile_for(processes: list[tuple[str, Path]], *, http_port: int | None = None) -> TargetProfile:
    return TargetProfile.model_validate({
        "name": "test", "backend": "local",
        "edge": {"host": HOST, "address": "127.0.0.1", "https_port": 1, "http_port": http_port},
        "local": {"processes": [{"name": name, "pid_file": path} for name, path in processes]},
    })


def test_plain_http_server_in_a_child_is_found_and_fails(
        start_server: Callable[[str], tuple[int, Path]], fast_policy: Policy) -> None:
    # Given a process whose forked child serves plain HTTP
    port, pid_file = start_server("http")
    # When its listeners are enumerated and probed
    sockets = listening_sockets(profile_for([("api", pid_file)]).local.processes)  # type: ignore[union-attr]
    assert [s.port for s in sockets] == [port]
    verdict = origin_not_plaintext_verdict(survey_origin(profile_for([("api", pid_file)]), fast_policy))
    # Then the check fails naming the process and the port
    assert verdict.outcome is Outcome.FAIL
    assert "api (python" in verdict.message and f"127.0.0.1:{port}" in verdict.message
    assert "HTTP/1.0 200 OK" in verdict.message


def test_mute_listener_is_unverified(start_server: Callable[[str], tuple[int, Path]],
                                    fast_policy: Policy) -> None:
    # A listener that never answers was not observed to refuse plain HTTP: ERROR, not PASS.
    port, pid_file = start_server("mute")
    verdict = origin_not_plaintext_verdict(survey_origin(profile_for([("redis", pid_file)]), fast_policy))
    assert verdict.outcome is Outcome.ERROR, verdict.message
    assert f"127.0.0.1:{port}: no answer within" in verdict.message
    assert verdict.details["listeners"][0]["port"] == port


def test_nginx_edge_tls_port_is_fine_and_http_port_is_left_to_the_redirect_check(
        nginx_factory: Callable[..., NginxEdge], fast_policy: Policy) -> None:
    edge = nginx_factory()
    profile = profile_for([("nginx", edge.directory / "nginx.pid")], http_port=edge.http_port)
    survey = survey_origin(profile, fast_policy)
    assert {p.socket.port for p in survey.listeners} == {edge.https_port, edge.http_port}
    verdict = origin_not_plaintext_verdict(survey)
    assert verdict.outcome is Outcome.PASS, verdict.message


def test_stale_or_missing_pid_file_is_a_probe_error(tmp_path: Path, fast_policy: Policy) -> None:
    with pytest.raises(ProbeError, match=r"^process api: .*absent\.pid: the pid file was not read: "
                                         "No such file or directory$"):
        survey_origin(profile_for([("api", tmp_path / "absent.pid")]), fast_policy)
    stale = tmp_path / "stale.pid"
    stale.write_text("999999999\n")
    with pytest.raises(ProbeError, match="is not running"):
        survey_origin(profile_for([("api", stale)]), fast_policy)


def _proc_hex(address: str) -> str:
    """How the kernel prints an address: each 32-bit word in little-endian byte order."""
    packed = ipaddress.ip_address(address).packed
    return "".join(packed[i:i + 4][::-1].hex().upper() for i in range(0, len(packed), 4))


@given(st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)), st.integers(0, 65535),
       st.integers(1, 2**32), st.sampled_from(["0A", "01", "06"]))
def test_proc_net_tcp_round_trip(address: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int,
                                 inode: int, state: str) -> None:
    line = (f"   0: {_proc_hex(str(address))}:{port:04X} 00000000:0000 {state} 00000000:00000000 "
            f"00:00000000 00000000     0        0 {inode} 1 0")
    parsed = parse_proc_net_tcp("header\n" + line)
    assert parsed == ({inode: (str(address), port)} if state == "0A" else {})
