"""Container topology: bridge networks on one host, only the edge publishes 80/443, no escape hatches.

These promises are about the Docker deployment. Against a target that runs as
local processes or is only reachable over the network they are NOT_APPLICABLE,
with the reason.
"""

from __future__ import annotations

import pytest

from harness.evidence import EvidenceRecorder
from harness.outcomes import Verdict
from harness.policy import Policy
from harness.probes.containers import ContainerTopology, ContainerView, observe_topology
from harness.profile import TargetProfile

PUBLIC_CONTAINER_PORTS = {"80/tcp", "443/tcp"}
PUBLIC_HOST_PORTS = {80, 443}
DATA_ROLES = {"db", "redis", "hsm"}
LOOPBACK = {"127.0.0.1", "::1"}


def _edge_name(topology: ContainerTopology, edge_container: str | None) -> str | None:
    if edge_container:
        return edge_container
    edges = [c.name for c in topology.containers if c.role == "edge"]
    return edges[0] if len(edges) == 1 else None


def _no_containers(topology: ContainerTopology) -> Verdict | None:
    if not topology.containers:
        return Verdict.error(f"no running container carries the label votriz.project={topology.project}: "
                             f"nothing to judge")
    return None


def published_ports_verdict(topology: ContainerTopology, edge_container: str | None) -> Verdict:
    """Only the edge publishes ports, only 80/443, and nothing else is bound to a public address."""
    empty = _no_containers(topology)
    if empty:
        return empty
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


def bridge_networks_verdict(topology: ContainerTopology) -> Verdict:
    """Every container is on user-defined bridge networks of one host; data services on internal ones."""
    empty = _no_containers(topology)
    if empty:
        return empty
    problems = []
    if topology.swarm_active:
        problems.append("the engine is part of a swarm (containers may run on other hosts)")
    for container in topology.containers:
        if container.network_mode in ("host", "none") or container.network_mode.startswith("container:"):
            problems.append(f"{container.name} uses network mode {container.network_mode}")
        if not container.networks and container.network_mode not in ("host", "none"):
            problems.append(f"{container.name} is on no network")
        for net in container.networks:
            if net.driver != "bridge" or not net.user_defined or net.scope not in ("local", ""):
                problems.append(f"{container.name} is on {net.name} (driver {net.driver}, scope {net.scope}"
                                f"{', Docker default network' if not net.user_defined else ''})")
            elif container.role in DATA_ROLES and not net.internal:
                problems.append(f"{container.name} ({container.role}) is on {net.name}, which has a route "
                                f"outside (data services belong on an internal network)")
    table = [{"container": c.name, "role": c.role, "network_mode": c.network_mode,
              "networks": [{"name": n.name, "driver": n.driver, "internal": n.internal} for n in c.networks]}
             for c in topology.containers]
    if problems:
        return Verdict.failed("container networking breaks the promise: " + "; ".join(problems),
                              containers=table)
    return Verdict.passed(f"all {len(topology.containers)} containers are on user-defined bridge networks of "
                          f"one host ({topology.engine_host}); data services are on internal networks",
                          containers=table)


def isolation_verdict(topology: ContainerTopology) -> Verdict:
    """No container is privileged or shares the host's network or process namespace."""
    empty = _no_containers(topology)
    if empty:
        return empty
    problems = []
    for container in topology.containers:
        problems += _escape_hatches(container)
    if problems:
        return Verdict.failed("containers escape their isolation: " + "; ".join(problems))
    return Verdict.passed(f"none of {len(topology.containers)} containers is privileged or shares the host's "
                          f"network or PID namespace")


def _escape_hatches(container: ContainerView) -> list[str]:
    found = []
    if container.privileged:
        found.append(f"{container.name} runs privileged")
    if container.network_mode == "host":
        found.append(f"{container.name} shares the host's network namespace")
    if container.pid_mode == "host":
        found.append(f"{container.name} shares the host's PID namespace")
    return found


@pytest.fixture(scope="session")
def topology(profile: TargetProfile, policy: Policy) -> ContainerTopology | None:
    """The project's containers, or None if the target does not run as Docker containers."""
    if profile.backend != "docker" or profile.docker is None:
        return None
    return observe_topology(profile.docker.project, timeout_s=policy.timeouts.request_s)


def _require_docker(topology: ContainerTopology | None, profile: TargetProfile,
                    evidence: EvidenceRecorder) -> ContainerTopology:
    if topology is None:
        kind = "local processes" if profile.backend == "local" else f"a {profile.backend} deployment"
        evidence.not_applicable(f"the target runs as {kind}, not as Docker containers described by a "
                                f"[docker] profile section")
    assert topology is not None
    evidence.attach("topology", {"project": topology.project, "engine_host": topology.engine_host,
                                 "swarm_active": topology.swarm_active,
                                 "containers": [c.name for c in topology.containers]})
    return topology


@pytest.mark.claims("INTERNAL-ONLY-80-443")
def check_published_ports(topology: ContainerTopology | None, profile: TargetProfile,
                          evidence: EvidenceRecorder) -> None:
    observed = _require_docker(topology, profile, evidence)
    edge = profile.docker.edge_container if profile.docker else None
    evidence.conclude(published_ports_verdict(observed, edge))


@pytest.mark.claims("INTERNAL-BRIDGE-NETWORK")
def check_bridge_networks(topology: ContainerTopology | None, profile: TargetProfile,
                          evidence: EvidenceRecorder) -> None:
    evidence.conclude(bridge_networks_verdict(_require_docker(topology, profile, evidence)))


@pytest.mark.claims("INTERNAL-BRIDGE-NETWORK")
def check_isolation(topology: ContainerTopology | None, profile: TargetProfile,
                    evidence: EvidenceRecorder) -> None:
    evidence.conclude(isolation_verdict(_require_docker(topology, profile, evidence)))
