"""The service as local processes on the auditor's host (profile ``backend = "local"``).

Processes are found through the pid files of ``[local]`` (``probes/processes``),
listeners through those processes' sockets in ``/proc`` (``probes/listeners``),
logs in ``local.log_dir``. There are no containers: the topology is out of reach.
"""

from __future__ import annotations

import harness.platform.base as base
from harness.platform.base import OutOfReach, PlatformKind, ServiceArtifacts, ServiceLogs
from harness.policy import Policy
from harness.probes.containers import ContainerTopology
from harness.probes.listeners import OriginSurvey, survey_origin
from harness.probes.processes import ProcessObservation, observe_local
from harness.profile import TargetProfile


class LocalPlatform:
    """Local processes named by the profile's ``[local]`` section (which may be absent).

    Attributes:
        profile: the target profile.
        policy: the audit policy (timeouts).
    """

    kind: PlatformKind = "local"

    def __init__(self, profile: TargetProfile, policy: Policy) -> None:
        self.profile = profile
        self.policy = policy

    def processes(self) -> tuple[ProcessObservation, ...] | OutOfReach:
        """Every ``[local]`` process and its descendants, read in ``/proc``."""
        if self.profile.local is None or not self.profile.local.processes:
            return base.processes_out_of_reach(self.profile)
        return tuple(observe_local(self.profile.local))

    def logs(self, max_bytes: int) -> ServiceLogs | OutOfReach:
        """``local.log_dir`` (no container output); ``max_bytes`` bounds container output only."""
        return base.logs_of(self.profile)

    def listeners(self) -> OriginSurvey | OutOfReach:
        """The ``[local]`` processes' TCP listeners, each tried with plain HTTP on loopback."""
        if self.profile.local is None or not self.profile.local.processes:
            return base.listeners_out_of_reach(self.profile)
        return survey_origin(self.profile, self.policy)

    def artifacts(self) -> ServiceArtifacts:
        """The ``[scan]`` paths; local processes run no image."""
        return base.files_of(self.profile)

    def topology(self) -> ContainerTopology | OutOfReach:
        """Out of reach: local processes are not containers."""
        return base.topology_out_of_reach("local processes")
