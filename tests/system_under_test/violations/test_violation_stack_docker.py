"""RunningStack on a real Docker stack: superuser SQL over the bind-mounted socket, the HSM over
the auditor's p11-kit socket, Redis on the internal network, and an edge reload in the container
(edge-reload-tls12 through the backend, then a TLS 1.2 handshake is accepted)."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from system_under_test.backends import BACKENDS
from system_under_test.violations.stack import RunningStack

pytestmark = [pytest.mark.integration, pytest.mark.slow]
DOCKER = BACKENDS["docker"]


@pytest.fixture(scope="module")
def docker_state() -> Iterator[Path]:
    available = DOCKER.availability()
    if not available.ok:
        pytest.skip(available.reason)
    # A short path under /tmp: the auditor's p11-kit and PostgreSQL sockets live below it.
    import tempfile

    state_dir = Path(tempfile.mkdtemp(prefix="f9-docker-", dir="/tmp"))
    try:
        DOCKER.up(state_dir)
        yield state_dir
    finally:
        DOCKER.down(state_dir)


def handshake(port: int, ca_file: Path, version: ssl.TLSVersion) -> str:
    context = ssl.create_default_context(cafile=str(ca_file))
    context.minimum_version = context.maximum_version = version
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname="votriz.test") as tls:
        return str(tls.version())


def test_sql_hsm_and_redis_reach_the_containers(docker_state: Path) -> None:
    stack = RunningStack.open(docker_state)
    assert stack.backend == "docker" and stack.containers["edge"]
    assert stack.sql("SELECT current_user") == [("postgres",)]
    assert stack.backup_dir == docker_state / "backups" and stack.api_log.parent == docker_state / "logs" / "api"
    script = textwrap.dedent(f"""
        from system_under_test.violations.stack import RunningStack
        stack = RunningStack.open({str(docker_state)!r})
        with stack.hsm_session() as session:
            print(sum(1 for _ in session.get_objects()))
        print(stack.redis().ping())
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    count, pong = done.stdout.split()
    assert int(count) >= 10 and pong == "True"


def test_edge_reload_in_the_container_takes_effect(docker_state: Path) -> None:
    stack = RunningStack.open(docker_state)
    port = int(stack.profile["edge"]["https_port"])
    with pytest.raises(ssl.SSLError):
        handshake(port, stack.ca_file, ssl.TLSVersion.TLSv1_2)
    DOCKER.apply_violation(docker_state, "edge-reload-tls12")
    assert handshake(port, stack.ca_file, ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
