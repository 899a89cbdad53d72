"""A deployment the harness reaches only over the network (profile ``backend = "remote"``).

Also what a profile gets whose ``[docker]`` section is missing: the harness
cannot see its processes, listeners or containers. The profile's ``[scan]``
paths and log directory, when it names them, are read on this host as for
any other platform.
"""

from __future__ import annotations

import harness.platform.base as base
from harness.platform.base import OutOfReach, PlatformKind, ServiceArtifacts, ServiceLogs
from harness.policy import Policy
from harness.probes.containers import ContainerTopology
from harness.probes.listeners import OriginSurvey
from harness.probes.processes import ProcessObservation
from harness.profile import TargetProfile


class RemotePlatform:
    """A deployment seen only through the network and the paths the profile names.

    Attributes:
        profile: the target profile.
        policy: the audit policy.
    """

    kind: PlatformKind = "remote"

    def __init__(self, profile: TargetProfile, policy: Policy) -> None:
        self.profile = profile
        self.policy = policy

    def processes(self) -> tuple[ProcessObservation, ...] | OutOfReach:
        """Out of reach: no process of a remote deployment is visible here."""
        return base.processes_out_of_reach(self.profile)

    def logs(self, max_bytes: int) -> ServiceLogs | OutOfReach:
        """The profile's log directory if it names one (read on this host)."""
        return base.logs_of(self.profile)

    def listeners(self) -> OriginSurvey | OutOfReach:
        """Out of reach: the origin's listeners cannot be listed from here."""
        return base.listeners_out_of_reach(self.profile)

    def artifacts(self) -> ServiceArtifacts:
        """The ``[scan]`` paths (read on this host); no image is visible."""
        return base.files_of(self.profile)

    def topology(self) -> ContainerTopology | OutOfReach:
        """Out of reach: no container engine of this deployment is visible."""
        return base.topology_out_of_reach(f"a {self.profile.backend} deployment")
