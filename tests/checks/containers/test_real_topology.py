"""The container checks on real Docker containers: a tiny image imported from the host's static
busybox (no registry needed), observed by the engine as the area's ``topology`` fixture does."""

from __future__ import annotations

import io
import shutil
import socket
import subprocess
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from checks.containers.bridge_networks import bridge_networks_verdict
from checks.containers.isolation import isolation_verdict
from checks.containers.published_ports import published_ports_verdict
from checks.transit.origin_not_plaintext import origin_not_plaintext_verdict
from harness.outcomes import Outcome
from harness.policy import load_policy
from harness.probes.containers import observe_topology
from harness.probes.listeners import host_network_listeners, survey_docker_origin
from harness.profile import TargetProfile


def _docker():
    docker = pytest.importorskip("docker")
    try:
        client = docker.from_env(timeout=20)
        client.ping()
    except Exception as exc:  # the engine is part of the machine; say clearly if it is absent
        pytest.fail(f"the Docker engine does not answer: {exc}")
    return client


@pytest.fixture(scope="module")
def busybox_image() -> str:
    busybox = shutil.which("busybox") or "/bin/busybox"
    if not Path(busybox).exists():
        pytest.fail("busybox not found: apt-get install busybox-static")
    client = _docker()
    tag = "votriz-audit-test/busybox:1"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(busybox, arcname="bin/busybox")
        link = tarfile.TarInfo("bin/sh")
        link.type, link.linkname = tarfile.SYMTYPE, "busybox"
        tar.addfile(link)
    subprocess.run(["docker", "import", "-", tag], input=buffer.getvalue(), check=True, capture_output=True)
    client.close()
    return tag


@pytest.fixture
def project(busybox_image: str) -> Iterator[dict]:
    client = _docker()
    name = f"audit-test-{uuid.uuid4().hex[:8]}"
    public = client.networks.create(f"{name}_public", driver="bridge")
    internal = client.networks.create(f"{name}_internal", driver="bridge", internal=True)

    def run(role: str, network, command=("/bin/busybox", "sleep", "300"), **kwargs):
        container = client.containers.run(
            busybox_image, list(command), name=f"{name}-{role}", detach=True,
            labels={"votriz.project": name, "votriz.role": role}, network=network.name if network else None,
            **kwargs)
        return container

    yield {"name": name, "run": run, "public": public, "internal": internal}
    # By label, so that a container whose start failed is removed too.
    for container in client.containers.list(all=True, filters={"label": f"votriz.project={name}"}):
        container.remove(force=True)
    public.remove()
    internal.remove()
    client.close()


@pytest.mark.integration
def test_real_clean_topology_passes(project: dict) -> None:
    # Given an edge on the public network publishing 443 on loopback and a db on the internal network
    edge = project["run"]("edge", project["public"], ports={"443/tcp": ("127.0.0.1", None)})
    project["internal"].connect(edge)
    project["run"]("db", project["internal"])
    # When the engine is asked
    topology = observe_topology(project["name"])
    # Then every container check passes
    assert len(topology.containers) == 2
    assert published_ports_verdict(topology, None).outcome is Outcome.PASS
    assert bridge_networks_verdict(topology).outcome is Outcome.PASS
    assert isolation_verdict(topology).outcome is Outcome.PASS


@pytest.mark.integration
def test_real_published_db_port_and_host_network_fail(project: dict) -> None:
    # Given a db publishing its port and an api sharing the host's network and processes
    # (privileged containers cannot start in every sandbox; the judgement tests cover them)
    project["run"]("edge", project["public"], ports={"443/tcp": ("127.0.0.1", None)})
    # (Docker publishes nothing for a container that is only on an internal network, so
    # the misplaced db sits on the public one, where its binding is live.)
    project["run"]("db", project["public"], ports={"5432/tcp": ("127.0.0.1", None)})
    project["run"]("api", None, network_mode="host", pid_mode="host")
    topology = observe_topology(project["name"])
    # Then each check names the offending container
    ports = published_ports_verdict(topology, None)
    assert ports.outcome is Outcome.FAIL and f"{project['name']}-db publishes 5432/tcp" in ports.message
    networks = bridge_networks_verdict(topology)
    assert networks.outcome is Outcome.FAIL and "uses network mode host" in networks.message
    assert "which has a route outside" in networks.message
    isolation = isolation_verdict(topology)
    assert isolation.outcome is Outcome.FAIL
    assert "shares the host's PID namespace" in isolation.message


@pytest.mark.integration
def test_a_host_network_container_serving_plain_http_fails_ports_and_origin(project: dict) -> None:
    # Given a metrics container on the host's network serving plain HTTP on every host address,
    # published nowhere (the engine lists no port binding for it), and an api there listening on none
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    project["run"]("edge", project["public"], ports={"443/tcp": ("127.0.0.1", None)})
    project["run"]("api", None, network_mode="host")
    project["run"]("metrics", None, ("/bin/busybox", "httpd", "-f", "-p", f"0.0.0.0:{port}", "-h", "/"),
                   network_mode="host")
    profile = TargetProfile.model_validate({"name": "t", "backend": "docker", "edge": {"host": "votriz.test"},
                                            "docker": {"project": project["name"]}})
    policy = load_policy()
    deadline = time.monotonic() + 10
    while not (listeners := host_network_listeners(profile, policy)).sockets and time.monotonic() < deadline:
        time.sleep(0.1)
    # When its ports and its origin are judged
    ports = published_ports_verdict(observe_topology(project["name"]), None, listeners)
    origin = origin_not_plaintext_verdict(survey_docker_origin(profile, policy))
    # Then both fail, naming the listener the port bindings do not show
    metrics = f"{project['name']}-metrics"
    assert ports.outcome is Outcome.FAIL, ports.message
    assert f"{metrics} shares the host's network and listens on 0.0.0.0:{port} (busybox" in ports.message
    assert origin.outcome is Outcome.FAIL, origin.message
    assert f"{metrics} (busybox, pid" in origin.message and f"on 0.0.0.0:{port} answers plain HTTP" in origin.message


@pytest.mark.integration
def test_a_host_network_container_listening_nowhere_public_passes_ports(project: dict) -> None:
    project["run"]("edge", project["public"], ports={"443/tcp": ("127.0.0.1", None)})
    project["run"]("api", None, network_mode="host")
    profile = TargetProfile.model_validate({"name": "t", "backend": "docker", "edge": {"host": "votriz.test"},
                                            "docker": {"project": project["name"]}})
    ports = published_ports_verdict(observe_topology(project["name"]), None,
                                    host_network_listeners(profile, load_policy()))
    assert ports.outcome is Outcome.PASS, ports.message
    assert f"{project['name']}-api shares the host's network and listens on no public address there" \
        in ports.message
