"""The containers area's shared observation: the project's containers and networks, once per run."""

from __future__ import annotations

import pytest

from harness.platform import OutOfReach, platform_for
from harness.policy import Policy
from harness.probes.containers import ContainerTopology
from harness.profile import TargetProfile


@pytest.fixture(scope="session")
def topology(profile: TargetProfile, policy: Policy) -> ContainerTopology | OutOfReach:
    """The project's containers, or why the target does not run as Docker containers."""
    return platform_for(profile, policy).topology()
