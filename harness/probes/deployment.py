"""Where the service runs, for the key checks: its processes, its containers' logs and layers.

Which of these the harness can see depends on the backend the profile names:
the processes of a local stack (from their pid files) or of a Docker
project's containers (from ``/proc`` on the Docker host), and, on Docker, the
containers' output and every layer of their images. On any other target it
sees none of them, and says so (None, or empty artifacts).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.policy import Policy
from harness.probes import docker_engine
from harness.probes.processes import ProcessObservation, observe_docker, observe_local
from harness.profile import TargetProfile


def observe_service_processes(profile: TargetProfile, policy: Policy) -> list[ProcessObservation] | None:
    """The service's processes (local backend), or None when the harness cannot see them."""
    if profile.backend == "local" and profile.local is not None and profile.local.processes:
        return observe_local(profile.local)
    if profile.backend == "docker" and profile.docker is not None:
        return observe_docker(profile.docker.project, timeout_s=policy.timeouts.request_s)
    return None


@dataclass(frozen=True)
class DockerArtifacts:
    """What the engine holds about the service's containers, for the key search.

    Attributes:
        logs: (``docker logs NAME``, bytes, truncated) per container.
        layers: (name, directory) per distinct layer of the containers' images.
        images: the images whose layers were listed.
        unsearchable: images whose layers could not be read, with why.
    """

    logs: tuple[tuple[str, bytes, bool], ...] = ()
    layers: tuple[tuple[str, Path], ...] = ()
    images: tuple[str, ...] = ()
    unsearchable: tuple[str, ...] = ()

    def as_evidence(self) -> dict[str, Any]:
        return {"images": list(self.images), "layers": [label for label, _ in self.layers],
                "container_logs": [name for name, _, _ in self.logs],
                "unsearchable": list(self.unsearchable)}


def observe_docker_artifacts(profile: TargetProfile, policy: Policy, max_log_bytes: int) -> DockerArtifacts:
    """The containers' logs and image layers (Docker backend), else nothing."""
    if profile.backend != "docker" or profile.docker is None:
        return DockerArtifacts()
    client = docker_engine.docker_client(policy)
    try:
        containers = docker_engine.project_containers(profile.docker.project, client)
        logs = docker_engine.container_logs(containers, max_log_bytes)
        layers = docker_engine.image_layers(containers, client)
    finally:
        client.close()
    return DockerArtifacts(tuple((log.where, log.data, log.truncated) for log in logs),
                           layers.layers, layers.images, layers.unsearchable)
