"""Local discovery for ``votriz-audit init --local``: real processes in /proc, real pid files and
nginx configurations; against the local reference stack, its edge, processes and sockets."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.probes import local_discovery
from harness.probes.discovery import DiscoveryError
from harness.profile import load_profile


@pytest.fixture
def fake_gunicorn(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A process started as ``python3 .../gunicorn app:app --pid FILE`` that writes its pid there."""
    script = tmp_path / "gunicorn"
    pid_file = tmp_path / "gunicorn.pid"
    script.write_text("import os, sys, time\n"
                      "open(sys.argv[sys.argv.index('--pid') + 1], 'w').write(f'{os.getpid()}\\n')\n"
                      "time.sleep(60)\n")
    child = subprocess.Popen([sys.executable, str(script), "app:app", "--pid", str(pid_file)])
    try:
        deadline = time.monotonic() + 10
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        yield child.pid, pid_file
    finally:
        child.kill()
        child.wait()


def test_a_gunicorn_master_is_the_api_and_its_pid_file_is_verified(fake_gunicorn) -> None:
    pid, pid_file = fake_gunicorn
    # When the host's processes are surveyed,
    roots = {root.pid: root for root in local_discovery.local_roots()}
    # then it is the service's api part, and the pid file its command line names holds its pid.
    assert roots[pid].part == "api" and roots[pid].argv[-2:] == ("--pid", str(pid_file))
    candidates = local_discovery.pid_file_candidates(roots[pid])
    assert local_discovery.verified_pid_file(pid, candidates) == pid_file
    # This test process is no part of a deployment.
    assert os.getpid() not in roots


def test_a_pid_file_that_names_another_process_is_not_taken(tmp_path: Path) -> None:
    (tmp_path / "pid").write_text("1\n")
    assert local_discovery.verified_pid_file(os.getpid(), [tmp_path / "pid", tmp_path / "absent"]) is None
    (tmp_path / "pid").write_text(f"{os.getpid()}\n")
    assert local_discovery.verified_pid_file(os.getpid(), [tmp_path / "pid"]) == tmp_path / "pid"
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    started = time.monotonic()
    assert local_discovery.verified_pid_file(os.getpid(), [fifo]) is None  # refused, never blocks
    assert time.monotonic() - started < 2


def test_nginx_directives_from_a_rewritten_title(tmp_path: Path) -> None:
    (tmp_path / "nginx.conf").write_text("pid run/nginx.pid;\nhttp {\n  server {\n"
                                         "    ssl_certificate /srv/pki/edge.pem;\n  }\n}\n")
    # nginx rewrites its title into one string, which discovery splits into these words.
    argv = ("nginx:", "master", "process", "/usr/sbin/nginx", "-p", str(tmp_path), "-c", "nginx.conf")
    assert local_discovery.nginx_directives(argv, "pid") == [tmp_path / "run" / "nginx.pid"]
    assert local_discovery.nginx_directives(argv, "ssl_certificate") == [Path("/srv/pki/edge.pem")]
    assert local_discovery.nginx_directives(("nginx", "-p", str(tmp_path / "absent")), "pid") == []


def test_no_edge_on_the_port_asked_for_is_one_line(fake_gunicorn) -> None:
    # (fake_gunicorn makes sure some part of a service runs here, so the port is what is missing)
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    with pytest.raises(DiscoveryError) as caught:
        local_discovery.discover_local(edge_port=closed, timeout_s=2)
    assert str(caught.value) == f"no nginx on this host completes a TLS handshake on port {closed}"


def test_paths_shared_with_the_edge() -> None:
    assert local_discovery._shared("/tmp/a/run/nginx.pid", "/tmp/a/pgdata/postmaster.pid") > \
        local_discovery._shared("/tmp/a/run/nginx.pid", "/tmp/b/data/postmaster.pid")


@pytest.mark.integration
def test_the_local_reference_stack_is_found_by_its_edge_port(clean_stack) -> None:
    own = load_profile(clean_stack.profile_path)
    # When the local reference's edge port is named (other deployments may run on this host),
    found = local_discovery.discover_local(edge_port=own.edge.https_port, timeout_s=5)
    # then its edge is found by handshake, with the name and the CA its own profile gives,
    assert found.edge is not None and found.edge.https_port == own.edge.https_port
    assert found.edge.http_port == own.edge.http_port
    assert found.edge.certificate is not None and own.edge.host in found.edge.certificate.names
    assert found.edge.certificate.trust_anchor == own.edge.trust_anchor
    # and each process its profile lists is among those found, by pid (pid files may differ:
    # postgres's own postmaster.pid holds the same pid as the stack's copy).
    assert own.local is not None
    expected = {int(p.pid_file.read_text().split()[0]) for p in own.local.processes}
    assert expected <= {pid for _, pid, pid_file in found.processes if pid_file is not None}
    assert found.postgres_sockets and found.log_dirs
