"""The Docker objects of one stack: creating, starting and removing containers, networks, volumes.

Every object is named ``votriz-<id>-...`` and labelled ``votriz.stack=<id>``;
:func:`remove_objects` removes only objects carrying its stack's label. The
engine is driven with the ``docker`` SDK (not Compose), imported on first use
so that the package stays light for the images (``fakes_server``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from system_under_test.common.host import StackError
from system_under_test.common.pki import LOOPBACK
from system_under_test.docker import images as image_builds
from system_under_test.docker import topology
from system_under_test.docker.target_profile import ops_command
from system_under_test.docker.topology import ServiceSpec

OPS_TIMEOUT_S = 180


def docker_client(timeout_s: int = 300) -> Any:
    """A client of the local engine (DOCKER_HOST or the socket); StackError if unreachable."""
    import docker
    from docker.errors import DockerException

    try:
        client = docker.from_env(timeout=timeout_s)
        client.ping()
    except DockerException as exc:
        raise StackError(f"Docker engine not reachable: {str(exc).splitlines()[0][:200]}") from None
    return client


def object_names(stack_id: str) -> dict[str, str]:
    """The project's name (``votriz.project`` and ``com.docker.compose.project`` labels) and each
    role's container name."""
    project = f"votriz-{stack_id}"
    return {"project": project, **{role: f"{project}-{role}" for role in
                                   ("edge", "api", "db", "redis", "hsm", "fakes", "ops")}}


def stack_labels(stack_id: str, role: str) -> dict[str, str]:
    """The labels of one of the stack's objects: its own and those Compose would give it."""
    project = object_names(stack_id)["project"]
    return {topology.PROJECT_LABEL: project, topology.ROLE_LABEL: role, topology.STACK_LABEL: stack_id,
            **topology.compose_labels(project, role)}


def mounts(spec: ServiceSpec, volumes: Mapping[str, str]) -> list[Any]:
    from docker.types import Mount

    return [Mount(target=str(m.target), source=str(m.source) if m.source else volumes[str(m.volume)],
                  type="bind" if m.source else "volume", read_only=m.read_only)
            for m in spec.mounts]


def create_container(client: Any, spec: ServiceSpec, name: str, image: str, labels: Mapping[str, str],
                      networks: Mapping[str, Any], volumes: Mapping[str, str],
                      command: Sequence[str] | None = None) -> Any:
    kwargs: dict[str, Any] = {
        "name": name, "labels": dict(labels), "environment": dict(spec.environment),
        "mounts": mounts(spec, volumes), "user": f"{topology.SERVICE_UID}:{topology.SERVICE_GID}",
        # An init reaps p11-kit's per-connection helpers and forwards signals (HUP to nginx).
        "init": True, "detach": True,
        "ports": {port: (address, None) for port, address in spec.ports.items()},
    }
    if command is not None or spec.command is not None:
        kwargs["command"] = list(command if command is not None else spec.command or ())
    later: list[str] = []
    if spec.network_mode:
        kwargs["network_mode"] = spec.network_mode
    else:
        first, *later = spec.networks
        kwargs["network"] = networks[first].name
        if first == topology.INTERNAL and spec.aliases:
            kwargs["networking_config"] = {networks[first].name: client.api.create_endpoint_config(
                aliases=list(spec.aliases))}
    container = client.containers.create(image, **kwargs)
    for key in later:
        networks[key].connect(container, aliases=list(spec.aliases) if key == topology.INTERNAL else None)
    return container


def start_container(client: Any, spec: ServiceSpec, name: str, image: str, labels: Mapping[str, str],
                     networks: Mapping[str, Any], volumes: Mapping[str, str]) -> Any:
    container = create_container(client, spec, name, image, labels, networks, volumes)
    container.start()
    return container


def create_ops_container(client: Any, api_spec: ServiceSpec, name: str, image: str,
                         labels: Mapping[str, str], networks: Mapping[str, Any],
                         volumes: Mapping[str, str], command: str) -> Any:
    """A one-shot container from the API image with the API's mounts and environment, to run
    ``ops COMMAND`` (:func:`run_ops_container`); created ahead, while other containers get ready."""
    return create_container(client, api_spec, name, image, labels, networks, volumes,
                            command=ops_command(command))


def run_ops_container(container: Any, command: str) -> None:
    """Run the one-shot container of :func:`create_ops_container` to its end, and remove it.

    ``migrate`` must run before the API starts (its fault columns need the tables).

    Raises:
        StackError: the command failed (its last line of output).
    """
    try:
        container.start()
        status = container.wait(timeout=OPS_TIMEOUT_S)
        if status.get("StatusCode") != 0:
            raise StackError(f"ops {command} failed: {last_line(container.logs())}")
    finally:
        container.remove(force=True)


def image_with_baked_key(client: Any, api_tag: str, stack_id: str, key: bytes) -> str:
    """The ``key-in-image`` fault: the API image plus one layer holding the token key."""
    import io
    import tarfile

    dockerfile = (f"FROM {api_tag}\n"
                  f"COPY token.key {topology.CONFIG_DIR / 'token.key'}\n").encode("ascii")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in (("Dockerfile", dockerfile), ("token.key", key + b"\n")):
            member = tarfile.TarInfo(name)
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    buffer.seek(0)
    tag = f"{image_builds.REPOSITORY}/api-key-in-image:{stack_id}"
    client.images.build(fileobj=buffer, custom_context=True, tag=tag, pull=False, rm=True,
                        network_mode="none", labels={topology.STACK_LABEL: stack_id})
    return tag


def last_line(output: bytes | None) -> str:
    lines = [line for line in (output or b"").decode("utf-8", "replace").splitlines() if line.strip()]
    return lines[-1].strip()[:300] if lines else "no output"


def exec_ok(container: Any, argv: Sequence[str]) -> bool:
    return bool(container.exec_run(list(argv)).exit_code == 0)


def exec_output_has(container: Any, argv: Sequence[str], needles: Sequence[str]) -> bool:
    output = container.exec_run(list(argv)).output.decode("utf-8", "replace")
    return any(needle in output for needle in needles)


def host_port(container: Any, container_port: int) -> int:
    container.reload()
    bindings = container.attrs["NetworkSettings"]["Ports"].get(f"{container_port}/tcp") or []
    for binding in bindings:
        if binding.get("HostIp") in (LOOPBACK, "", "0.0.0.0"):
            return int(binding["HostPort"])
    return 0


def address_on(container: Any, network: str) -> str:
    """The container's IPv4 address on ``network`` (the host reaches internal networks too)."""
    container.reload()
    address = (container.attrs["NetworkSettings"]["Networks"].get(network) or {}).get("IPAddress")
    if not address:
        raise StackError(f"container {container.name} has no address on {network}")
    return str(address)


def remove_objects(client: Any, stack_id: str) -> None:
    """Remove every container, network and volume labelled ``votriz.stack=<stack_id>``."""
    from docker.errors import NotFound

    selector = {"label": f"{topology.STACK_LABEL}={stack_id}"}

    def each(remove: Callable[[Any], None], objects: list[Any]) -> None:
        # The engine removes objects of a kind in parallel (measured: 6 containers one after
        # another 3.2 s at load 3); the first error is raised once all were tried.
        def quietly(thing: Any) -> None:
            with contextlib.suppress(NotFound):
                remove(thing)

        with ThreadPoolExecutor(max_workers=max(1, len(objects))) as pool:
            for future in [pool.submit(quietly, thing) for thing in objects]:
                future.result()

    # Listed without inspecting each one (``sparse``): a removal needs only the id.
    each(lambda c: c.remove(force=True, v=True), client.containers.list(all=True, filters=selector,
                                                                        sparse=True))
    each(lambda n: n.remove(), client.networks.list(filters=selector))
    each(lambda v: v.remove(force=True), client.volumes.list(filters=selector))
    # Only images a fault built for this stack carry its label; the shared ones do not.
    for image in client.images.list(filters=selector):
        with contextlib.suppress(NotFound):
            client.images.remove(image.id, force=True)


def stack_objects(stack_id: str, *, client: Any = None) -> dict[str, list[str]]:
    """Names of the containers, networks, volumes and images still labelled with ``stack_id``."""
    own_client = client is None
    client = client or docker_client()
    selector = {"label": f"{topology.STACK_LABEL}={stack_id}"}
    try:
        return {"containers": [c.name for c in client.containers.list(all=True, filters=selector)],
                "networks": [n.name for n in client.networks.list(filters=selector)],
                "volumes": [v.name for v in client.volumes.list(filters=selector)],
                "images": [i.tags[0] if i.tags else i.id for i in client.images.list(filters=selector)]}
    finally:
        if own_client:
            client.close()
