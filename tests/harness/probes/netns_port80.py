"""Port 80 behind real firewall rules, on either side, for test_http (run as a script).

``unshare -n python netns_port80.py auditor CERT KEY HOST_NETNS_INODE`` runs in a private network
namespace (the auditor's side). It starts an edge in a second private namespace, joined to it by a
veth pair (10.213.0.1 here, 10.213.0.2 the edge: port 80 serves a 200 page, port 443 speaks TLS),
then for each scenario adds iptables rules on one side (``here``: OUTPUT of the auditor's namespace;
``edge``: INPUT of the edge's), runs the probe and the check's verdict on the plaintext port, prints
one JSON line, and flushes the rules. It refuses to run in the host's own network namespace, so the
host's rules are never touched; both namespaces end with their processes.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

HERE, EDGE = "10.213.0.1", "10.213.0.2"
PAGE = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 21\r\nConnection: close\r\n\r\n<p>plain content</p>\n"
# (name, side, iptables arguments, profile's http_port)
SCENARIOS = [
    ("no rule", "here", [], 80),
    ("reject here", "here", ["-A", "OUTPUT", "-p", "tcp", "--dport", "80", "-j", "REJECT"], 80),
    ("reject here host-unreachable", "here",
     ["-A", "OUTPUT", "-p", "tcp", "--dport", "80", "-j", "REJECT", "--reject-with", "icmp-host-unreachable"], 80),
    ("drop here", "here", ["-A", "OUTPUT", "-p", "tcp", "--dport", "80", "-j", "DROP"], "none"),
    ("reset here", "here",
     ["-A", "OUTPUT", "-p", "tcp", "--dport", "80", "-j", "REJECT", "--reject-with", "tcp-reset"], 80),
    ("reject at the edge", "edge", ["-A", "INPUT", "-p", "tcp", "--dport", "80", "-j", "REJECT"], "none"),
    ("reset at the edge", "edge",
     ["-A", "INPUT", "-p", "tcp", "--dport", "80", "-j", "REJECT", "--reject-with", "tcp-reset"], 80),
    ("mistyped port", "here", [], 8080),
]


def serve_edge(cert: str, key: str) -> None:
    """The edge's side: a 200 page on port 80, TLS on port 443, until stdin closes."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)

    def answer(port: int, reply: Callable[[socket.socket], None]) -> None:
        server = socket.create_server(("0.0.0.0", port))
        def loop() -> None:
            while True:
                conn, _ = server.accept()
                threading.Thread(target=reply, args=(conn,), daemon=True).start()
        threading.Thread(target=loop, daemon=True).start()

    def page(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            try:
                conn.recv(4096)
                conn.sendall(PAGE)
            except OSError:
                pass

    def tls(conn: socket.socket) -> None:
        try:
            with context.wrap_socket(conn, server_side=True) as wrapped:
                wrapped.settimeout(5)
                wrapped.recv(1)
        except OSError:
            conn.close()

    answer(80, page)
    answer(443, tls)
    print("ready", flush=True)
    sys.stdin.read()


def run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, timeout=20)


def audit(cert: str, key: str, host_netns: int) -> None:
    if os.stat("/proc/self/ns/net").st_ino == host_netns:
        raise SystemExit("refused: not in a private network namespace")
    from checks.transit.http_redirect_only import plaintext_port_verdict
    from harness.policy import TimeoutsPolicy, load_policy
    from harness.probes.http import visit_plaintext_port
    from harness.profile import Edge

    edge_side = subprocess.Popen(["unshare", "-n", sys.executable, __file__, "edge", cert, key],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert edge_side.stdout is not None and edge_side.stdout.readline().strip() == "ready"
        in_edge = ("nsenter", "-t", str(edge_side.pid), "-n")
        run("ip", "link", "set", "lo", "up")
        run("ip", "link", "add", "aud0", "type", "veth", "peer", "name", "edge0")
        run("ip", "link", "set", "edge0", "netns", str(edge_side.pid))
        run("ip", "addr", "add", f"{HERE}/30", "dev", "aud0")
        run("ip", "link", "set", "aud0", "up")
        run(*in_edge, "ip", "link", "set", "lo", "up")
        run(*in_edge, "ip", "addr", "add", f"{EDGE}/30", "dev", "edge0")
        run(*in_edge, "ip", "link", "set", "edge0", "up")
        policy = load_policy().model_copy(update={"timeouts": TimeoutsPolicy(connect_s=1.0, request_s=3.0)})
        for name, side, rule, http_port in SCENARIOS:
            iptables = ("iptables",) if side == "here" else (*in_edge, "iptables")
            if rule:
                run(*iptables, *rule)
            edge = Edge(host="votriz.test", address=EDGE, http_port=http_port, https_port=443,
                        sample_paths=("/",))
            try:
                verdict = plaintext_port_verdict(visit_plaintext_port(edge, policy), edge)
            finally:
                if rule:
                    run(*iptables, "-F", rule[1])
            print(json.dumps({"scenario": name, "outcome": verdict.outcome.value, "message": verdict.message,
                              "details": verdict.details}, default=str), flush=True)
    finally:
        edge_side.kill()
        edge_side.wait()


if __name__ == "__main__":
    if sys.argv[1] == "edge":
        serve_edge(sys.argv[2], sys.argv[3])
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
        audit(sys.argv[2], sys.argv[3], int(sys.argv[4]))
