"""The service as Docker containers of one project on the auditor's host (``backend = "docker"``).

The project's containers are those the profile's one selector names
(``docker.compose_project``, ``docker.labels`` or the deprecated
``docker.project``: :attr:`harness.profile.Docker.project`); every query below
uses it, so processes, logs, layers, listeners and topology are of the same
containers.

The harness runs on the Docker host. Processes are each container's
configured environment plus its processes in ``/proc`` (``probes/processes``);
listeners are those processes' sockets, tried on the containers' own
addresses (``probes/listeners``); logs are ``docker.log_dir`` plus each
container's output as the engine keeps it, and artifacts the on-disk layers
of every image the containers run (``probes/docker_engine``); the topology is
the engine's list of the project's containers and networks (``probes/containers``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from harness.platform.base import PlatformKind, ServiceArtifacts, ServiceLogs, files_of
from harness.policy import Policy
from harness.probes import docker_engine
from harness.probes.containers import ContainerTopology, observe_topology
from harness.probes.listeners import OriginSurvey, survey_docker_origin
from harness.probes.processes import ProcessObservation, observe_docker
from harness.profile import Docker, TargetProfile

T = TypeVar("T")


class DockerPlatform:
    """The containers the ``[docker]`` section selects (by Compose project or labels).

    Attributes:
        profile: the target profile.
        policy: the audit policy (every call to the engine is bounded by
            ``timeouts.request_s``).
        docker: the profile's ``[docker]`` section.
    """

    kind: PlatformKind = "docker"

    def __init__(self, profile: TargetProfile, policy: Policy, docker: Docker) -> None:
        self.profile = profile
        self.policy = policy
        self.docker = docker

    def _ask_engine(self, ask: Callable[[list[Any], Any], T]) -> T:
        """``ask(containers, client)`` about the project's running containers, in one engine session.

        Raises:
            ProbeError: the engine cannot be reached, or runs no container of the project.
        """
        client = docker_engine.docker_client(self.policy)
        try:
            return ask(docker_engine.project_containers(self.docker.project, client), client)
        finally:
            client.close()

    def processes(self) -> tuple[ProcessObservation, ...]:
        """Each container's configured environment and its processes, with descendants."""
        return tuple(observe_docker(self.docker.project, timeout_s=self.policy.timeouts.request_s))

    def logs(self, max_bytes: int) -> ServiceLogs:
        """``docker.log_dir`` (if named) and each container's output, read up to ``max_bytes``.

        Raises:
            ProbeError: the engine cannot be asked, or runs no container of the project.
        """
        outputs = self._ask_engine(lambda containers, _: docker_engine.container_logs(containers, max_bytes))
        return ServiceLogs(self.profile.log_dir, tuple(outputs))

    def listeners(self) -> OriginSurvey:
        """The containers' TCP listeners, each tried with plain HTTP where other containers reach it."""
        return survey_docker_origin(self.profile, self.policy)

    def artifacts(self) -> ServiceArtifacts:
        """The ``[scan]`` paths and every layer of every image the containers run.

        Raises:
            ProbeError: the engine cannot be asked or cannot describe an image.
        """
        layers = self._ask_engine(docker_engine.image_layers)
        files = files_of(self.profile)
        return ServiceArtifacts(files.source_paths, files.config_paths, layers)

    def topology(self) -> ContainerTopology:
        """The selected containers and their networks, as the engine reports them."""
        return observe_topology(self.docker.project, timeout_s=self.policy.timeouts.request_s)

