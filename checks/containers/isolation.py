"""containers.isolation: no container is privileged or shares the host's network or processes."""

from __future__ import annotations

import pytest

from harness.evidence import EvidenceRecorder
from harness.outcomes import Verdict
from harness.probes.containers import ContainerTopology, ContainerView


def isolation_verdict(topology: ContainerTopology) -> Verdict:
    """No container is privileged or shares the host's network or process namespace."""
    empty = topology.nothing_to_judge()
    if empty:
        return Verdict.error(empty)
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


@pytest.mark.claims("INTERNAL-BRIDGE-NETWORK")
@pytest.mark.access("docker")
def check_isolation(docker_topology: ContainerTopology, evidence: EvidenceRecorder) -> None:
    evidence.conclude(isolation_verdict(docker_topology))
