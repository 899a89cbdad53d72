"""containers.published_ports: only the edge publishes ports, only 80/443."""

from __future__ import annotations

from typing import Any

import pytest

from harness.evidence import EvidenceRecorder
from harness.outcomes import Verdict
from harness.policy import Policy
from harness.probes.containers import ContainerTopology
from harness.probes.listeners import ListenerScan, host_network_listeners, is_loopback
from harness.profile import TargetProfile

PUBLIC_CONTAINER_PORTS = {"80/tcp", "443/tcp"}
PUBLIC_HOST_PORTS = {80, 443}
LOOPBACK = {"127.0.0.1", "::1"}


def _edge_name(topology: ContainerTopology, edge_container: str | None) -> str | None:
    if edge_container:
        return edge_container
    edges = [c.name for c in topology.containers if c.role == "edge"]
    return edges[0] if len(edges) == 1 else None


def _host_network_problems(edge: str, host_listeners: ListenerScan) -> list[str]:
    """Sockets of containers on the host's network that are on the host's public addresses."""
    problems = []
    for sock in host_listeners.sockets:
        if is_loopback(sock.address):
            continue
        where = (f"{sock.process} shares the host's network and listens on {sock.address}:{sock.port} "
                 f"({sock.command}, pid {sock.pid}) there")
        if sock.process != edge:
            problems.append(where + " (not published, exposed all the same; only the edge may expose ports)")
        elif sock.port not in PUBLIC_HOST_PORTS:
            problems.append(where + " (the edge may expose only 80 and 443)")
    return problems


def published_ports_verdict(topology: ContainerTopology, edge_container: str | None,
                            host_listeners: ListenerScan | None = None) -> Verdict:
    """Only the edge publishes ports, only 80/443, and nothing else is bound to a public address:
    neither by a port binding nor by a container sharing the host's network (``host_listeners``,
    read for those containers; None when none shares it)."""
    empty = topology.nothing_to_judge()
    if empty:
        return Verdict.error(empty)
    edge = _edge_name(topology, edge_container)
    if edge is None:
        return Verdict.error("cannot tell which container is the edge: set docker.edge_container in the "
                             "profile or label exactly one container votriz.role=edge")
    problems = []
    for container in topology.containers:
        for port in container.published:
            where = f"{container.name} publishes {port.container_port} on {port.host_ip}:{port.host_port}"
            if container.name != edge:
                problems.append(where + " (only the edge may publish ports)")
            elif port.container_port not in PUBLIC_CONTAINER_PORTS:
                problems.append(where + " (the edge may publish only 80/tcp and 443/tcp)")
            elif port.host_ip not in LOOPBACK and port.host_port not in PUBLIC_HOST_PORTS:
                problems.append(where + " (a public binding must be port 80 or 443)")
    on_host = [c.name for c in topology.containers if c.network_mode == "host"]
    if on_host and host_listeners is not None:
        problems += _host_network_problems(edge, host_listeners)
    table = [{"container": c.name, "published": [f"{p.host_ip}:{p.host_port}->{p.container_port}"
                                                 for p in c.published],
              "host_network": c.network_mode == "host"} for c in topology.containers]
    listening = None if host_listeners is None else [
        f"{s.process} {s.address}:{s.port} ({s.command}, pid {s.pid})" for s in host_listeners.sockets]
    details: dict[str, Any] = {"containers": table, "host_network_listeners": listening}
    if problems:
        return Verdict.failed(f"{len(problems)} port binding(s) break the promise: " + "; ".join(problems),
                              **details)
    if on_host and (host_listeners is None or host_listeners.unreadable):
        why = ("they were not read" if host_listeners is None
               else "; ".join(host_listeners.unreadable[:3]))
        return Verdict.error(f"{', '.join(on_host)} {'shares' if len(on_host) == 1 else 'share'} the host's "
                             "network, where a port is exposed without being published, and the sockets "
                             f"could not all be read ({why}).", **details)
    shared = (f"; {', '.join(on_host)} {'shares' if len(on_host) == 1 else 'share'} the host's network and "
              "listens on no public address there" if on_host else "")
    return Verdict.passed(f"of {len(topology.containers)} containers only the edge ({edge}) publishes ports, "
                          f"and only 80/443{shared}", **details)


@pytest.mark.claims("INTERNAL-ONLY-80-443")
@pytest.mark.access("docker", "processes")
def check_published_ports(docker_topology: ContainerTopology, profile: TargetProfile, policy: Policy,
                          evidence: EvidenceRecorder) -> None:
    edge = profile.docker.edge_container if profile.docker else None
    on_host = any(c.network_mode == "host" for c in docker_topology.containers)
    listeners = host_network_listeners(profile, policy) if on_host else None
    evidence.conclude(published_ports_verdict(docker_topology, edge, listeners))
