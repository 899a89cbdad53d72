"""Docker probe: what the engine says about the audited project's containers and networks.

Reads only (list and inspect); the engine is reached through the ``docker``
SDK with the environment's settings (DOCKER_HOST or the local socket). Every
SDK client the harness makes comes from :func:`docker_client`, with the
policy's request timeout on every call, so an engine that is gone, refuses,
hangs or hangs up half-way through is a :class:`ProbeError` naming the engine,
the step and what happened, in bounded time.
"""

from __future__ import annotations

import http.client
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.outcomes import ProbeError

#: The harness's own label, which the reference service puts on its containers.
PROJECT_LABEL = "votriz.project"
#: The label Docker Compose puts on every container of a project.
COMPOSE_PROJECT_LABEL = "com.docker.compose.project"
#: The label Docker Compose puts on a one-off container (``docker compose run``): "True".
COMPOSE_ONEOFF_LABEL = "com.docker.compose.oneoff"
#: The label Docker Compose puts on a container: its service's name.
COMPOSE_SERVICE_LABEL = "com.docker.compose.service"
#: The most labels a selector may name (a profile is hand-written; this bounds the engine query).
MAX_SELECTOR_LABELS = 32


@dataclass(frozen=True)
class ContainerSelector:
    """Which containers are the audited deployment: those carrying every one of ``labels``.

    Every query the harness makes to the engine (containers, logs, image layers,
    processes, listeners, topology) selects with this one value, so they all
    see the same containers.

    Attributes:
        labels: ``(key, value)`` pairs, sorted by key; a container is selected
            when it carries each key with exactly that value.
        finished: services (Compose service name, else container name) that run to
            completion, such as a migration: one that exited with code 0 is not down.
    """

    labels: tuple[tuple[str, str], ...]
    finished: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.labels:
            raise ValueError("a container selector needs at least one label")
        if len(self.labels) > MAX_SELECTOR_LABELS:
            raise ValueError(f"a container selector names at most {MAX_SELECTOR_LABELS} labels")
        for key, value in self.labels:
            if not key or any(c in key for c in "=,") or key != key.strip() or not key.isprintable():
                raise ValueError(f"label key {key!r} is not a Docker label key")
            if not value.isprintable():
                raise ValueError(f"the value of label {key!r} holds a control character")

    @classmethod
    def of(cls, labels: Mapping[str, str]) -> ContainerSelector:
        """The containers carrying every one of ``labels``."""
        return cls(tuple(sorted(labels.items())))

    @classmethod
    def compose_project(cls, name: str) -> ContainerSelector:
        """The containers of Compose project ``name`` (``com.docker.compose.project=NAME``)."""
        return cls(((COMPOSE_PROJECT_LABEL, name),))

    @classmethod
    def votriz_project(cls, name: str) -> ContainerSelector:
        """The containers labelled with the harness's own ``votriz.project=NAME``."""
        return cls(((PROJECT_LABEL, name),))

    def engine_filters(self) -> dict[str, list[str]]:
        """The filters of the engine's container list: its ``label`` filters must all match."""
        return {"label": [f"{key}={value}" for key, value in self.labels]}

    def __str__(self) -> str:
        return ", ".join(f"{key}={value}" for key, value in self.labels)

    @property
    def described(self) -> str:
        """The selector in words: ``the label K=V`` or ``the labels K=V and K2=V2``."""
        pairs = [f"{key}={value}" for key, value in self.labels]
        if len(pairs) == 1:
            return f"the label {pairs[0]}"
        return f"the labels {', '.join(pairs[:-1])} and {pairs[-1]}"


def selector_of(project: str | ContainerSelector) -> ContainerSelector:
    """``project`` as a selector: a bare name is the value of the harness's ``votriz.project`` label."""
    return project if isinstance(project, ContainerSelector) else ContainerSelector.votriz_project(project)


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
        role: value of the ``votriz.role`` label (``edge``, ``api``, ``db`` ...), else
            its Compose service (``com.docker.compose.service``), else empty.
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
        project: the selector of the project's containers (a bare name: the value
            of the ``votriz.project`` label).
        engine_host: the engine's host name (all containers run on it).
        swarm_active: True if the engine is part of a swarm (multi-host).
        containers: the project's running containers.
    """

    project: str | ContainerSelector
    engine_host: str
    swarm_active: bool
    containers: tuple[ContainerView, ...]

    def nothing_to_judge(self) -> str | None:
        """Why there is nothing to judge (no container of the project runs), or None."""
        if not self.containers:
            return f"no running container carries {selector_of(self.project).described}: nothing to judge"
        return None

    def summary(self) -> dict[str, object]:
        """What was observed, for the evidence: the selector, the engine and the container names."""
        return {"project": str(self.project), "engine_host": self.engine_host,
                "swarm_active": self.swarm_active, "containers": [c.name for c in self.containers]}


_DEFAULT_NETWORKS = {"bridge", "host", "none"}
#: The labels that say what a container is, first found wins: the harness's own, then Compose's.
ROLE_LABELS = ("votriz.role", COMPOSE_SERVICE_LABEL)


def _role(labels: Mapping[str, str]) -> str:
    """What the container is (``edge``, ``db`` ...): its first role label, else empty."""
    return next((str(labels[key]) for key in ROLE_LABELS if labels.get(key)), "")


def _published(ports: dict[str, Any] | None) -> tuple[PublishedPort, ...]:
    found = []
    for container_port, bindings in sorted((ports or {}).items()):
        for binding in bindings or []:
            found.append(PublishedPort(container_port, binding.get("HostIp") or "0.0.0.0",
                                       int(binding.get("HostPort") or 0)))
    return tuple(found)


DEFAULT_ENGINE = "unix:///var/run/docker.sock"


def engine_address() -> str:
    """The engine the SDK will talk to: ``DOCKER_HOST``, or Docker's default socket."""
    return os.environ.get("DOCKER_HOST") or DEFAULT_ENGINE


def docker_client(timeout_s: float) -> Any:
    """A ``docker`` SDK client whose every call gives up after ``timeout_s`` seconds.

    The SDK asks the engine for its API version as the client is made, so
    this call is already bounded by the timeout.

    Raises:
        ProbeError: the engine cannot be reached or does not answer in time.
    """
    import docker

    try:
        return docker.from_env(timeout=timeout_s)
    except Exception as exc:  # the SDK wraps some errors and lets requests' through: classify
        raise engine_error(exc, "asking for its API version", timeout_s) from None


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception it wraps: causes, contexts, and the ones requests and
    urllib3 keep in their arguments or ``reason``."""
    seen: set[int] = set()
    pending = [exc]
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        inner = [current.__cause__, current.__context__, getattr(current, "reason", None),
                 *getattr(current, "args", ())]
        pending.extend(e for e in inner if isinstance(e, BaseException))


def _state(container: Any) -> Mapping[str, Any]:
    state = container.attrs.get("State")
    return state if isinstance(state, Mapping) else {}


def _labels(container: Any) -> Mapping[str, str]:
    return (container.attrs.get("Config") or {}).get("Labels") or {}


def down_in_words(container: Any) -> str:
    """``NAME is exited (exit code 3 at 2026-…)``: a selected container that is not running."""
    state = _state(container)
    status = str(state.get("Status") or "in an unknown state")
    words = f"{container.name} is {status}"
    if status in ("exited", "restarting", "dead"):
        words += f" (exit code {state.get('ExitCode', '?')}"
        if state.get("OOMKilled"):
            words += ", killed for want of memory"
        finished = str(state.get("FinishedAt") or "")
        words += f" at {finished[:19]}Z)" if finished[:4].isdigit() and finished[:4] != "0001" else ")"
    return words


def _ran_to_completion(container: Any, finished: Sequence[str]) -> bool:
    """A one-off (``docker compose run``) that is not running, or a service the profile names
    as running to completion that exited with code 0."""
    labels = _labels(container)
    if labels.get(COMPOSE_ONEOFF_LABEL) == "True":
        return True
    state = _state(container)
    service = labels.get(COMPOSE_SERVICE_LABEL) or str(container.name)
    return service in finished and state.get("Status") == "exited" and state.get("ExitCode") == 0


def service_containers(selector: ContainerSelector, client: Any) -> list[Any]:
    """The containers ``selector`` selects: every one running, or run to completion.

    A selected container that is not running (exited, restarting, paused, created, dead)
    is a part of the service that is down: nothing in it can be observed, and a verdict
    about the rest would speak for it as well. Not down: a one-off container that has
    ended (``docker compose run``: ``com.docker.compose.oneoff=True``), and a service of
    ``selector.finished`` (a migration, an init job) that exited with code 0; they are
    returned with the running ones, so that their output, configured environment and
    image are searched too (they have no process and no listener). A container removed
    between the listing and its inspection is left out, as the engine would now.

    Raises:
        ProbeError: a selected container is down (each named with its state and exit
            code), or the engine cannot be asked (the SDK's error, for the caller to word).
    """
    listed: list[Any] = client.containers.list(all=True, filters=selector.engine_filters(),
                                               ignore_removed=True)
    down = [c for c in listed if _state(c).get("Status") != "running"
            and not _ran_to_completion(c, selector.finished)]
    if down:
        raise ProbeError(f"docker: {len(down)} of the {len(listed)} containers labelled {selector} "
                         f"{'is' if len(down) == 1 else 'are'} not running: "
                         + "; ".join(down_in_words(c) for c in sorted(down, key=lambda c: str(c.name)))
                         + ". A part of the service that is down cannot be observed: start it and "
                         "audit again (a service that runs to completion, such as a migration, "
                         "goes in the profile's docker.finished_services)")
    return listed


def engine_error(exc: BaseException, step: str, timeout_s: float) -> ProbeError:
    """A precise, printable reason for a failed call to the engine.

    Args:
        exc: what the SDK (or requests under it) raised.
        step: what the probe was doing, in words (``listing the containers of project 'p'``).
        timeout_s: the timeout every call had.
    """
    import requests
    from docker.errors import APIError, NotFound

    where = f"Docker engine at {engine_address()}"
    chain = list(_causes(exc))

    def has(*kinds: type[BaseException]) -> bool:
        return any(isinstance(e, kinds) for e in chain)

    if has(NotFound):
        what = ("answered 404: it no longer knows an object it had just listed "
                "(is the project being restarted?)")
    elif has(APIError):
        api_error = next(e for e in chain if isinstance(e, APIError))
        explanation = (str(getattr(api_error, "explanation", "") or "").splitlines() or [""])[0][:200]
        what = f"answered HTTP {api_error.status_code}" + (f" ({explanation})" if explanation else "")
    elif has(requests.exceptions.Timeout, TimeoutError):
        what = f"no answer within {timeout_s:g} s (policy timeouts.request_s)"
    elif has(FileNotFoundError):
        what = "its socket does not exist (the engine is not running)"
    elif has(ConnectionRefusedError):
        what = "connection refused (nothing listens there)"
    elif has(PermissionError):
        what = "permission denied on its socket"
    elif has(http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
        what = "it closed the connection without answering"
    elif has(ValueError, TypeError, KeyError, AttributeError):
        what = f"its answer is not a Docker API answer ({type(exc).__name__})"
    else:
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        what = f"{type(exc).__name__}: {first}".rstrip(": ")
    return ProbeError(f"{where}: {what}, while {step}")


def observe_topology(project: str | ContainerSelector, *, timeout_s: float = 10.0,
                     budget_s: float | None = None) -> ContainerTopology:
    """List the running containers ``project`` selects and their networks.

    Args:
        project: the selector of the project's containers (a bare name: the
            value of the ``votriz.project`` label).
        timeout_s: the longest any one call to the engine may take.
        budget_s: the longest the whole observation may take (an engine that
            answers each call just in time still ends it); default ``4 * timeout_s``.

    Raises:
        ProbeError: the engine cannot be reached, does not answer in time, hangs
            up, or answers with an error; the message names the engine and the step.
    """
    selector = selector_of(project)
    budget = budget_s if budget_s is not None else 4 * timeout_s
    deadline = time.monotonic() + budget
    step = "asking for its API version"

    def next_step(words: str) -> str:
        # Each call is bounded by the timeout; this bounds their sum, for an engine
        # that answers every call, but only just in time.
        if time.monotonic() > deadline:
            raise ProbeError(f"Docker engine at {engine_address()}: the observation took longer than "
                             f"{budget:g} s in all; gave up before {words}")
        return words

    client = docker_client(timeout_s)
    try:
        step = next_step("asking for its host name and swarm state")
        info = client.info()
        step = next_step(f"listing the containers labelled {selector}")
        listed = service_containers(selector, client)
        network_cache: dict[str, NetworkAttachment] = {}
        views = []
        for container in listed:
            attrs = container.attrs
            host_config = attrs.get("HostConfig", {})
            attachments = []
            for net_name, net in sorted((attrs.get("NetworkSettings", {}).get("Networks") or {}).items()):
                if net_name not in network_cache:
                    step = next_step(f"inspecting network {net_name}")
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
                role=_role(attrs.get("Config", {}).get("Labels") or {}),
                published=_published(attrs.get("NetworkSettings", {}).get("Ports")),
                networks=tuple(attachments),
                network_mode=host_config.get("NetworkMode", ""),
                pid_mode=host_config.get("PidMode", "") or "",
                privileged=bool(host_config.get("Privileged")),
            ))
        swarm = (info.get("Swarm") or {}).get("LocalNodeState", "inactive")
        engine_host = str(info.get("Name", ""))
    except ProbeError:
        raise
    except Exception as exc:  # the SDK, requests and a malformed answer raise many kinds: classify
        raise engine_error(exc, step, timeout_s) from None
    finally:
        client.close()
    return ContainerTopology(project=selector, engine_host=engine_host,
                             swarm_active=swarm not in ("inactive", ""),
                             containers=tuple(sorted(views, key=lambda v: v.name)))
