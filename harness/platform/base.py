"""What every platform answers, and how it says it cannot see something.

A platform is where the audited service runs, seen from the auditor's side:
its processes, its logs, its listeners, the files and image layers where keys
must not be, its container topology. Each method returns a typed observation,
or :class:`OutOfReach` when this kind of deployment does not let the harness
see that thing; a failure while observing something in reach is a
:class:`~harness.outcomes.ProbeError`, as for any probe.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from harness.probes.containers import ContainerTopology
from harness.probes.docker_engine import ContainerLog, ImageLayers
from harness.probes.listeners import OriginSurvey
from harness.probes.processes import ProcessObservation
from harness.profile import TargetProfile

PlatformKind = Literal["local", "docker", "remote"]


@dataclass(frozen=True)
class OutOfReach:
    """Something this platform does not let the harness observe.

    Attributes:
        reason: why, in words that name the profile's backend or missing
            section (a check quotes it in its MANUAL or NOT_APPLICABLE reason).
    """

    reason: str

    @property
    def sentence(self) -> str:
        """The reason as a sentence of its own (capitalised, without the full stop)."""
        return self.reason[:1].upper() + self.reason[1:]


@dataclass(frozen=True)
class ServiceLogs:
    """Where the service's logs are, and what its containers wrote.

    Attributes:
        directory: the directory of its log files on this host (``local.log_dir``
            or ``docker.log_dir``); None when the profile names none.
        outputs: each container's standard output and error as the engine keeps
            them (Docker only), each read up to the limit asked for.
    """

    directory: Path | None = None
    outputs: tuple[ContainerLog, ...] = ()


@dataclass(frozen=True)
class ServiceArtifacts:
    """The files and image layers where the service's keys must not be.

    Attributes:
        source_paths: the profile's ``scan.source_paths``.
        config_paths: the profile's ``scan.config_paths``.
        layers: the on-disk layers of the images its containers run; None when
            it runs no containers.
    """

    source_paths: tuple[Path, ...] = ()
    config_paths: tuple[Path, ...] = ()
    layers: ImageLayers | None = None


class Platform(Protocol):
    """One kind of deployment, as the auditor sees it.

    Attributes:
        kind: ``local``, ``docker`` or ``remote``.
    """

    kind: PlatformKind

    def processes(self) -> tuple[ProcessObservation, ...] | OutOfReach:
        """The service's running processes (environments, open files)."""
        ...

    def logs(self, max_bytes: int) -> ServiceLogs | OutOfReach:
        """Its log directory and its containers' output, each output read up to ``max_bytes``."""
        ...

    def listeners(self) -> OriginSurvey | OutOfReach:
        """Its TCP listeners, each tried with one plain-text HTTP request."""
        ...

    def artifacts(self) -> ServiceArtifacts:
        """Its source and configuration paths and its image layers."""
        ...

    def topology(self) -> ContainerTopology | OutOfReach:
        """Its containers and their networks."""
        ...


def listeners_out_of_reach(profile: TargetProfile) -> OutOfReach:
    """The listeners cannot be listed: no ``[local]`` processes and no ``[docker]`` project."""
    return OutOfReach(f"backend {profile.backend!r}, no [local] processes or [docker] project")


def processes_out_of_reach(profile: TargetProfile) -> OutOfReach:
    """The processes cannot be inspected: no ``[local]`` processes and no ``[docker]`` project."""
    return OutOfReach(f"backend {profile.backend!r}: the harness cannot inspect the service's "
                      "processes (no [local] processes or [docker] project in the profile)")


def topology_out_of_reach(runs_as: str) -> OutOfReach:
    """The service does not run as containers of a ``[docker]`` project."""
    return OutOfReach(f"the target runs as {runs_as}, not as Docker containers described by a "
                      f"[docker] profile section")


def logs_of(profile: TargetProfile) -> ServiceLogs | OutOfReach:
    """The profile's log directory, read on this host whatever the backend."""
    if profile.log_dir is None:
        return OutOfReach("no log directory (local.log_dir, docker.log_dir) or [docker] project "
                          "in the profile")
    return ServiceLogs(profile.log_dir)


def files_of(profile: TargetProfile) -> ServiceArtifacts:
    """The profile's ``[scan]`` paths, without image layers."""
    return ServiceArtifacts(profile.scan.source_paths, profile.scan.config_paths)
