"""containers.bridge_networks: every container is on user-defined bridge networks of one host."""

from __future__ import annotations

import pytest

from harness.evidence import EvidenceRecorder
from harness.outcomes import Verdict
from harness.probes.containers import ContainerTopology

DATA_ROLES = {"db", "redis", "hsm"}


def bridge_networks_verdict(topology: ContainerTopology) -> Verdict:
    """Every container is on user-defined bridge networks of one host; data services on internal ones."""
    empty = topology.nothing_to_judge()
    if empty:
        return Verdict.error(empty)
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


@pytest.mark.claims("INTERNAL-BRIDGE-NETWORK")
@pytest.mark.access("docker")
def check_bridge_networks(docker_topology: ContainerTopology, evidence: EvidenceRecorder) -> None:
    evidence.conclude(bridge_networks_verdict(docker_topology))
