"""containers.published_ports: only the edge publishes ports, only 80/443."""

from __future__ import annotations

import pytest

from harness.evidence import EvidenceRecorder
from harness.outcomes import Verdict
from harness.probes.containers import ContainerTopology
from harness.profile import TargetProfile

PUBLIC_CONTAINER_PORTS = {"80/tcp", "443/tcp"}
PUBLIC_HOST_PORTS = {80, 443}
LOOPBACK = {"127.0.0.1", "::1"}


def _edge_name(topology: ContainerTopology, edge_container: str | None) -> str | None:
    if edge_container:
        return edge_container
    edges = [c.name for c in topology.containers if c.role == "edge"]
    return edges[0] if len(edges) == 1 else None


def published_ports_verdict(topology: ContainerTopology, edge_container: str | None) -> Verdict:
    """Only the edge publishes ports, only 80/443, and nothing else is bound to a public address."""
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
    table = [{"container": c.name, "published": [f"{p.host_ip}:{p.host_port}->{p.container_port}"
                                                 for p in c.published]} for c in topology.containers]
    if problems:
        return Verdict.failed(f"{len(problems)} port binding(s) break the promise: " + "; ".join(problems),
                              containers=table)
    return Verdict.passed(f"of {len(topology.containers)} containers only the edge ({edge}) publishes ports, "
                          f"and only 80/443", containers=table)


@pytest.mark.claims("INTERNAL-ONLY-80-443")
@pytest.mark.access("docker")
def check_published_ports(docker_topology: ContainerTopology, profile: TargetProfile,
                          evidence: EvidenceRecorder) -> None:
    edge = profile.docker.edge_container if profile.docker else None
    evidence.conclude(published_ports_verdict(docker_topology, edge))
