"""The containers area's shared observation: the project's containers and networks, once per run."""

from __future__ import annotations

import pytest

from harness.evidence import EvidenceRecorder
from harness.platform import OutOfReach, platform_for
from harness.policy import Policy
from harness.probes.containers import ContainerTopology
from harness.profile import TargetProfile


@pytest.fixture(scope="session")
def topology(profile: TargetProfile, policy: Policy) -> ContainerTopology | OutOfReach:
    """The project's containers, or why the target does not run as Docker containers."""
    return platform_for(profile, policy).topology()


def judged_topology(topology: ContainerTopology | OutOfReach,
                    evidence: EvidenceRecorder) -> ContainerTopology:
    """The topology a check judges, recorded in its evidence; NOT_APPLICABLE (the check ends)
    when the target does not run as Docker containers."""
    if isinstance(topology, OutOfReach):
        evidence.not_applicable(topology.reason)
    assert isinstance(topology, ContainerTopology)  # not_applicable ended the check otherwise
    evidence.attach("topology", topology.summary())
    return topology


@pytest.fixture
def docker_topology(topology: ContainerTopology | OutOfReach,
                    evidence: EvidenceRecorder) -> ContainerTopology:
    """The topology, for one container check (see :func:`judged_topology`)."""
    return judged_topology(topology, evidence)
