"""Docker probe: what the engine says about the audited project's containers and networks.

Reads only (list and inspect); the engine is reached through the ``docker``
SDK with the environment's settings (DOCKER_HOST or the local socket).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.outcomes import ProbeError

PROJECT_LABEL = "votriz.project"


@dataclass(frozen=True)
class PublishedPort:
    """One port binding from the host to a container.

    Attributes:
        container_port: e.g. ``443/tcp``.
        host_ip: the host address it is bound to (``0.0.0.0`` = every address).
        host_port: the host port.
    """

    container_port: str
    host_ip: str
    host_port: int


@dataclass(frozen=True)
class NetworkAttachment:
    """A network a container is on.

    Attributes:
        name: the network's name.
        driver: ``bridge``, ``host``, ``overlay``, ``macvlan`` ...
        internal: True if the network has no route outside.
        user_defined: False for Docker's default networks (bridge, host, none).
        scope: ``local`` (one host) or ``swarm``/``global``.
    """

    name: str
    driver: str
    internal: bool
    user_defined: bool
    scope: str


@dataclass(frozen=True)
class ContainerView:
    """One container as the engine reports it.

    Attributes:
        name: container name.
        image: image reference.
        role: value of the ``votriz.role`` label (``edge``, ``api``, ``db`` ...).
        published: its port bindings to the host.
        networks: the networks it is attached to.
        network_mode: ``HostConfig.NetworkMode``.
        pid_mode: ``HostConfig.PidMode`` (``host`` shares the host's processes).
        privileged: ``HostConfig.Privileged``.
    """

    name: str
    image: str
    role: str
    published: tuple[PublishedPort, ...]
    networks: tuple[NetworkAttachment, ...]
    network_mode: str
    pid_mode: str
    privileged: bool


@dataclass(frozen=True)
class ContainerTopology:
    """The project's containers on one engine.

    Attributes:
        project: the project label value.
        engine_host: the engine's host name (all containers run on it).
        swarm_active: True if the engine is part of a swarm (multi-host).
        containers: the project's running containers.
    """

    project: str
    engine_host: str
    swarm_active: bool
    containers: tuple[ContainerView, ...]


_DEFAULT_NETWORKS = {"bridge", "host", "none"}


def _published(ports: dict[str, Any] | None) -> tuple[PublishedPort, ...]:
    found = []
    for container_port, bindings in sorted((ports or {}).items()):
        for binding in bindings or []:
            found.append(PublishedPort(container_port, binding.get("HostIp") or "0.0.0.0",
                                       int(binding.get("HostPort") or 0)))
    return tuple(found)


def observe_topology(project: str, *, timeout_s: float = 10.0) -> ContainerTopology:
    """List the running containers labelled ``votriz.project=<project>`` and their networks.

    Raises:
        ProbeError: the engine cannot be reached or answers with an error.
    """
    import docker
    from docker.errors import DockerException

    try:
        client = docker.from_env(timeout=int(max(timeout_s, 1)))
        info = client.info()
        listed = client.containers.list(filters={"label": f"{PROJECT_LABEL}={project}"})
        network_cache: dict[str, NetworkAttachment] = {}
        views = []
        for container in listed:
            attrs = container.attrs
            host_config = attrs.get("HostConfig", {})
            attachments = []
            for net_name, net in sorted((attrs.get("NetworkSettings", {}).get("Networks") or {}).items()):
                if net_name not in network_cache:
                    details = client.networks.get(net.get("NetworkID") or net_name).attrs
                    network_cache[net_name] = NetworkAttachment(
                        name=net_name, driver=details.get("Driver", ""),
                        internal=bool(details.get("Internal")),
                        user_defined=net_name not in _DEFAULT_NETWORKS,
                        scope=details.get("Scope", ""))
                attachments.append(network_cache[net_name])
            views.append(ContainerView(
                name=container.name or attrs.get("Name", "").lstrip("/"),
                image=attrs.get("Config", {}).get("Image", ""),
                role=(attrs.get("Config", {}).get("Labels") or {}).get("votriz.role", ""),
                published=_published(attrs.get("NetworkSettings", {}).get("Ports")),
                networks=tuple(attachments),
                network_mode=host_config.get("NetworkMode", ""),
                pid_mode=host_config.get("PidMode", "") or "",
                privileged=bool(host_config.get("Privileged")),
            ))
        client.close()
    except DockerException as exc:
        raise ProbeError(f"Docker engine: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}") from None
    swarm = (info.get("Swarm") or {}).get("LocalNodeState", "inactive")
    return ContainerTopology(project=project, engine_host=str(info.get("Name", "")),
                             swarm_active=swarm not in ("inactive", ""),
                             containers=tuple(sorted(views, key=lambda v: v.name)))
