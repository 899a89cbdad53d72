"""Bring the reference service up as Docker containers, and take it down again.

Same interface as ``system_under_test.local.stack``: ``up(state_dir, faults)
-> StackInfo`` (``profile_path`` is the harness's target profile), ``down(state_dir)``,
``StackError``. The pieces of the local backend are reused: the PKI, the
SoftHSM token and its keys (provisioned on the host into ``STATE/tokens``,
which only the HSM container mounts), the database roles, the Redis
configuration, the nginx configuration with its faults and ``api.toml``.
The containers themselves are described once, in ``topology.services()``.

Every Docker object is named ``votriz-<id>-...`` and labelled
``votriz.stack=<id>``; ``down`` removes only objects carrying its stack's
label. The engine is driven with the ``docker`` SDK (not Compose).
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import secrets
import shutil
import socket
import ssl
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from system_under_test import faults as faults_module
from system_under_test.docker import images as image_builds
from system_under_test.docker import topology
from system_under_test.docker.topology import ServiceSpec, StackPaths
from system_under_test.faults import FAULTS, Layer
from system_under_test.local import nginx, postgres, redis, softhsm
from system_under_test.local.pki import (
    DEFAULT_LEAF_LIFETIME,
    EDGE_HOST,
    EXPIRING_LEAF_LIFETIME,
    FAKES_HOST,
    LOOPBACK,
    build_pki,
    pki_paths,
)
from system_under_test.local.processes import StackError
from system_under_test.local.target_profile import OPERATIONS, Ports, render_api_config

STACK_SCHEMA_VERSION = 1
# Written first by ``up`` (it holds the stack id): ``down`` deletes only a directory that carries it.
MARKER = ".votriz-docker-stack"
START_TIMEOUT_S = 60.0
OPS_TIMEOUT_S = 180
POLL_S = 0.2


@dataclass(frozen=True)
class StackInfo:
    """What ``up`` started, as recorded in ``STATE/stack.json``.

    Attributes:
        state_dir: the state directory (absolute).
        stack_id: the id in every Docker object's name and ``votriz.stack`` label.
        project: the ``votriz.project`` label value (``votriz-<id>``).
        faults: the faults switched on.
        containers: role → container name.
        https_port: the edge's TLS port published on 127.0.0.1.
        http_port: the edge's plaintext port published on 127.0.0.1.
        images: part → image tag.
        ca_file: the local CA (trust anchor of the edge and the fakes).
        api_config: ``STATE/docker/api.toml`` (mounted into the API container).
        profile_path: ``STATE/target.toml``.
        images_in_s: time spent making sure the images exist.
        started_in_s: how long ``up`` took, images included.
    """

    state_dir: Path
    stack_id: str
    project: str
    faults: tuple[str, ...]
    containers: dict[str, str] = field(hash=False)
    https_port: int = 0
    http_port: int = 0
    images: dict[str, str] = field(default_factory=dict, hash=False)
    ca_file: Path = Path()
    api_config: Path = Path()
    profile_path: Path = Path()
    images_in_s: float = 0.0
    started_in_s: float = 0.0

    @property
    def base_url(self) -> str:
        """The edge's public URL (``votriz.test`` must resolve to 127.0.0.1 or be pinned)."""
        return f"https://{EDGE_HOST}:{self.https_port}"

    @property
    def edge_container(self) -> str:
        """Name of the edge container (the only one that publishes ports)."""
        return self.containers["edge"]

    def to_json(self) -> str:
        """The ``stack.json`` text."""
        data = json.loads(json.dumps(asdict(self), default=str))
        data["schema_version"] = STACK_SCHEMA_VERSION
        data["backend"] = "docker"
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> StackInfo:
        """Read a ``stack.json`` written by ``to_json``."""
        data = json.loads(text)
        return cls(
            state_dir=Path(data["state_dir"]), stack_id=data["stack_id"], project=data["project"],
            faults=tuple(data["faults"]), containers=dict(data["containers"]),
            https_port=int(data["https_port"]), http_port=int(data["http_port"]),
            images=dict(data["images"]), ca_file=Path(data["ca_file"]),
            api_config=Path(data["api_config"]), profile_path=Path(data["profile_path"]),
            images_in_s=float(data["images_in_s"]), started_in_s=float(data["started_in_s"]),
        )


def validate_faults(faults: Sequence[str]) -> tuple[str, ...]:
    """The faults, deduplicated and sorted; ValueError naming the known ones otherwise."""
    return faults_module.validate_faults(faults, "docker")


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


def _names(stack_id: str) -> dict[str, str]:
    project = f"votriz-{stack_id}"
    return {"project": project, **{role: f"{project}-{role}" for role in
                                   ("edge", "api", "db", "redis", "hsm", "fakes", "ops")}}


def _labels(stack_id: str, role: str) -> dict[str, str]:
    return {topology.PROJECT_LABEL: _names(stack_id)["project"], topology.ROLE_LABEL: role,
            topology.STACK_LABEL: stack_id}


def _write_secret(path: Path, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(value + "\n")


def _give_to_service_user(*paths: Path) -> None:
    # The containers run as uid 10001; files they read or write on bind mounts must be theirs.
    for path in paths:
        targets = [path, *path.rglob("*")] if path.is_dir() else [path]
        for target in targets:
            os.lchown(target, topology.SERVICE_UID, topology.SERVICE_GID)


def _prepare_state_dir(state_dir: Path, stack_id: str) -> None:
    if (state_dir / "stack.json").exists() or (state_dir / MARKER).exists():
        raise StackError(f"{state_dir} already holds a stack: run down first")
    if state_dir.exists() and any(state_dir.iterdir()):
        raise StackError(f"{state_dir} exists and is not empty: choose another state directory")
    if os.geteuid() != 0:
        raise StackError("the docker backend must run as root: it hands bind-mounted files "
                         "to the containers' service user (uid 10001)")
    state_dir.mkdir(parents=True, exist_ok=True)
    state_dir.chmod(0o711)
    (state_dir / MARKER).write_text(stack_id + "\n", encoding="ascii")
    for name, mode in (("pki", 0o755), ("secrets", 0o700), ("docker", 0o755), ("run", 0o755),
                       ("logs", 0o755), ("backups", 0o700)):
        (state_dir / name).mkdir(mode=mode)
        (state_dir / name).chmod(mode)
    for role in topology.role_log_dirs():
        (state_dir / "logs" / role).mkdir()
    (state_dir / "docker" / "edge").mkdir()
    for name in ("pg", "p11-audit"):
        (state_dir / "run" / name).mkdir(mode=0o700)
    # A file bind mount needs its source to exist.
    (state_dir / "drills.log").write_bytes(b"")
    _give_to_service_user(state_dir / "logs", state_dir / "backups", state_dir / "run" / "pg",
                          state_dir / "run" / "p11-audit", state_dir / "drills.log")


def up(state_dir: Path, faults: Sequence[str] = (), *, client: Any = None,
       with_ops: bool = True) -> StackInfo:
    """Build the images if needed and start the whole stack under ``state_dir``.

    ``with_ops`` runs ``ops migrate`` and ``ops seed-demo``, as the local backend does.

    Raises:
        ValueError: a fault is unknown or not applicable to Docker.
        StackError: the engine is unreachable, an image cannot be built or a
            container does not come up (everything already created is removed).
    """
    started = time.monotonic()
    chosen = validate_faults(faults)
    state_dir = Path(state_dir).resolve()
    own_client = client is None
    client = client or docker_client()
    stack_id = uuid.uuid4().hex[:10]
    _prepare_state_dir(state_dir, stack_id)
    try:
        try:
            built = image_builds.ensure_images(client)
        except image_builds.ImageError as exc:
            raise StackError(str(exc)) from None
        images_in_s = round(time.monotonic() - started, 1)
        info = _bring_up(client, state_dir, stack_id, chosen,
                         {part: b.tag for part, b in built.items()}, with_ops=with_ops)
        info = StackInfo(**{**asdict(info), "images_in_s": images_in_s,
                            "started_in_s": round(time.monotonic() - started, 1)})
        (state_dir / "stack.json").write_text(info.to_json(), encoding="utf-8")
        return info
    except BaseException:
        _remove_objects(client, stack_id)
        # Keep the logs for diagnosis, but no secret outlives a failed start.
        for name in ("secrets", "tokens"):
            shutil.rmtree(state_dir / name, ignore_errors=True)
        raise
    finally:
        if own_client:
            client.close()


def _hba() -> str:
    # Like the local backend's rules, with the internal network ("samenet") in place of 127.0.0.1.
    app_roles = f"{postgres.APP_ROLE},{postgres.AUDITOR_ROLE}"
    return ("# Written by system_under_test.docker.\n"
            f"local   all  {postgres.SUPERUSER}  trust\n"
            f"local   all  {app_roles}  scram-sha-256\n"
            f"host    all  {app_roles}  samenet  scram-sha-256\n")


def _bring_up(client: Any, state_dir: Path, stack_id: str, faults: tuple[str, ...],
              image_tags: Mapping[str, str], *, with_ops: bool) -> StackInfo:
    names = _names(stack_id)
    paths = StackPaths.under(state_dir, redis_password_file="key-not-in-hsm" in faults)
    pki = build_pki(paths.pki_dir, edge_lifetime=EXPIRING_LEAF_LIFETIME
                    if "cert-expiring" in faults else DEFAULT_LEAF_LIFETIME)

    # The token is made and filled on the host, exactly as for the local backend;
    # afterwards only the HSM container mounts its directory.
    token = softhsm.init_token(state_dir)
    values = softhsm.generate_values()
    if paths.redis_password_file is not None:
        _write_secret(paths.redis_password_file, values.pop(softhsm.REDIS_PASSWORD).decode())
    softhsm.provision_keys(token, values)
    del values
    from_hsm = softhsm.read_values(token, [softhsm.DB_PASSWORD, softhsm.REDIS_PASSWORD,
                                           softhsm.STRIPE, softhsm.TOKEN_KEY_V1])
    redis_password = (paths.redis_password_file.read_text(encoding="utf-8").strip()
                      if paths.redis_password_file else from_hsm[softhsm.REDIS_PASSWORD].decode())
    _write_secret(state_dir / "secrets" / "auditor-password", secrets.token_hex(24))
    # Redis reads its password with its configuration: a mounted secret file, like the PIN.
    # A second "bind" line overrides the local backend's loopback-only one.
    _write_secret(paths.redis_config, redis.render_config(topology.CONTAINER_STATE, topology.REDIS_PORT,
                                                          redis_password) + "bind 0.0.0.0\n")
    del redis_password
    paths.pg_hba.write_text(_hba(), encoding="ascii")
    edge_faults = sorted(f for f in faults if FAULTS[f].layer is Layer.EDGE)
    _write_edge_config(paths, edge_faults, topology.HTTPS_PORT, topology.HTTP_PORT)
    api_secrets: dict[str, str] = {}
    if "key-in-env" in faults:
        api_secrets["VOTRIZ_TOKEN_ENCRYPTION_KEY"] = base64.urlsafe_b64encode(
            from_hsm[softhsm.TOKEN_KEY_V1]).decode()
    if "pin-in-env" in faults:
        api_secrets["VOTRIZ_HSM_PIN"] = token.pin_file.read_text(encoding="ascii").strip()
    baked_key = (base64.urlsafe_b64encode(from_hsm[softhsm.TOKEN_KEY_V1])
                 if "key-in-image" in faults else None)
    stripe_key = from_hsm[softhsm.STRIPE].decode() if "key-in-config" in faults else None
    app_password = from_hsm[softhsm.DB_PASSWORD].decode()
    del from_hsm
    own = [paths.tokens_dir, paths.pin_file, paths.redis_config, pki.edge_key, pki.fakes_key]
    if paths.redis_password_file is not None:
        own.append(paths.redis_password_file)
    _give_to_service_user(*own)

    networks = {
        topology.PUBLIC: client.networks.create(f"{names['project']}-public", driver="bridge",
                                                labels=_labels(stack_id, "network")),
        topology.INTERNAL: client.networks.create(f"{names['project']}-internal", driver="bridge",
                                                  internal=True, labels=_labels(stack_id, "network")),
    }
    volumes = {key: client.volumes.create(f"{names['project']}-{key}",
                                          labels=_labels(stack_id, "volume")).name
               for key in topology.VOLUMES}
    specs = {spec.role: spec for spec in topology.services(paths, faults, api_secrets=api_secrets)}
    del api_secrets
    if baked_key is not None:
        image_tags = {**image_tags, "api": _image_with_baked_key(client, image_tags["api"], stack_id,
                                                                 baked_key)}
        del baked_key

    def start(role: str) -> Any:
        return _start_container(client, specs[role], names[role], image_tags[specs[role].part],
                                _labels(stack_id, role), networks, volumes)

    # PostgreSQL takes longest to accept connections (initdb on its first start: 3.3 s of
    # the 13.8 s stand-up, measured): it starts first, and the HSM, Redis,
    # the fakes and the edge, which need none of each other, start and get ready while it
    # initialises (measured: the stand-up went from 13.8 s to 10.9-11.7 s).
    db = start("db")
    hsm = start("hsm")
    rds = start("redis")
    fakes = start("fakes")
    edge = start("edge")
    _wait(lambda: _exec_ok(hsm, ["test", "-S", str(topology.P11_SOCKET)]), "hsm (p11-kit socket)", hsm)
    _wait(lambda: (paths.p11_audit_dir / "sock").is_socket(), "hsm (auditor's p11-kit socket)", hsm)
    _wait(lambda: _exec_output_has(rds, ["redis-cli", "-p", str(topology.REDIS_PORT), "PING"],
                                   ("NOAUTH", "PONG")), "redis", rds)
    _wait(lambda: _exec_ok(fakes, ["python", "-c", _PORTS_OPEN.format(
        ports=(topology.FAKES_PORT, topology.FAKES_PLAINTEXT_PORT))]), "fakes", fakes)
    _wait(lambda: nginx.tls_handshake_ok(_host_port(edge, topology.HTTPS_PORT), pki.ca_cert),
          "edge (TLS handshake)", edge)
    pg = postgres.PostgresServer(pid=0, port=topology.POSTGRES_PORT,
                                 pgdata=topology.CONTAINER_STATE / "pgdata",
                                 socket_dir=paths.pg_socket_dir, pid_file=Path("/nonexistent"),
                                 log_file=Path("/nonexistent"))
    _wait(lambda: _pg_accepts(pg), "db (postgres)", db)
    postgres.create_roles(pg, app_password=app_password, auditor_password=(
        state_dir / "secrets" / "auditor-password").read_text(encoding="ascii").strip())
    del app_password
    https_port, http_port = _host_port(edge, topology.HTTPS_PORT), _host_port(edge, topology.HTTP_PORT)
    # The redirect names the public port, known only now: rewrite the config and reload nginx.
    _write_edge_config(paths, edge_faults, https_port, http_port)
    edge.kill(signal="SIGHUP")
    if "http-serves-content" not in faults:
        _wait(lambda: f":{https_port}/" in _redirect_location(http_port), "edge (reload)", edge)

    ports = Ports(https=https_port, http=http_port, postgres=topology.POSTGRES_PORT,
                  redis=topology.REDIS_PORT, fakes=topology.FAKES_PORT,
                  fakes_plaintext=topology.FAKES_PLAINTEXT_PORT)
    paths.api_config.write_text(render_api_config(
        topology.CONTAINER_STATE, ports, faults,
        redis_password_file=topology.REDIS_PASSWORD_SECRET if paths.redis_password_file else None,
        stripe_api_key=stripe_key, hosts={"postgres": "db", "redis": "redis", "fakes": FAKES_HOST},
        hsm_module=topology.P11_CLIENT_MODULE), encoding="utf-8")
    del stripe_key
    if with_ops:
        _run_ops_container(client, specs["api"], names["ops"], image_tags["api"],
                           _labels(stack_id, "ops"), networks, volumes, "migrate")
    api = start("api")
    _wait(lambda: _healthz_ok(https_port, pki.ca_cert), "api (/healthz through the edge)", api)
    if with_ops:
        result = api.exec_run(ops_argv("seed-demo")[3:], user=f"{topology.SERVICE_UID}")
        if result.exit_code != 0:
            raise StackError(f"ops seed-demo failed: {_last_line(result.output)}")

    containers = {role: names[role] for role in specs}
    profile_path = state_dir / "target.toml"
    internal = networks[topology.INTERNAL].name
    profile_path.write_text(render_docker_profile(
        state_dir, names["project"], containers, https_port=https_port, http_port=http_port,
        redis_address=_address_on(rds, internal), fakes_address=_address_on(fakes, internal)),
        encoding="utf-8")
    return StackInfo(state_dir=state_dir, stack_id=stack_id, project=names["project"], faults=faults,
                     containers=containers, https_port=https_port, http_port=http_port,
                     images=dict(image_tags), ca_file=pki.ca_cert, api_config=paths.api_config,
                     profile_path=profile_path)


def _image_with_baked_key(client: Any, api_tag: str, stack_id: str, key: bytes) -> str:
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


def _write_edge_config(paths: StackPaths, edge_faults: Sequence[str], https_port: int,
                       http_port: int) -> None:
    text = nginx.render_config(topology.CONTAINER_STATE, pki_paths(topology.CONTAINER_STATE / "pki"),
                               https_port=https_port, http_port=http_port, faults=edge_faults,
                               listen_address="0.0.0.0",
                               listen_ports=(topology.HTTPS_PORT, topology.HTTP_PORT))
    # Replaced by rename, so nginx never reads a half-written file on reload.
    target = paths.edge_config_dir / "nginx.conf"
    scratch = target.with_suffix(".tmp")
    scratch.write_text(text, encoding="utf-8")
    scratch.chmod(0o644)
    scratch.replace(target)


def _mounts(spec: ServiceSpec, volumes: Mapping[str, str]) -> list[Any]:
    from docker.types import Mount

    return [Mount(target=str(m.target), source=str(m.source) if m.source else volumes[str(m.volume)],
                  type="bind" if m.source else "volume", read_only=m.read_only)
            for m in spec.mounts]


def _create_container(client: Any, spec: ServiceSpec, name: str, image: str, labels: Mapping[str, str],
                      networks: Mapping[str, Any], volumes: Mapping[str, str],
                      command: Sequence[str] | None = None) -> Any:
    kwargs: dict[str, Any] = {
        "name": name, "labels": dict(labels), "environment": dict(spec.environment),
        "mounts": _mounts(spec, volumes), "user": f"{topology.SERVICE_UID}:{topology.SERVICE_GID}",
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


def _start_container(client: Any, spec: ServiceSpec, name: str, image: str, labels: Mapping[str, str],
                     networks: Mapping[str, Any], volumes: Mapping[str, str]) -> Any:
    container = _create_container(client, spec, name, image, labels, networks, volumes)
    container.start()
    return container


def ops_argv(command: str, container: str = "") -> list[str]:
    """``docker exec CONTAINER python -m system_under_test.ops COMMAND --state-dir /var/lib/votriz``."""
    return ["docker", "exec", container, "python", "-m", "system_under_test.ops", command,
            "--state-dir", str(topology.CONTAINER_STATE)]


def _run_ops_container(client: Any, api_spec: ServiceSpec, name: str, image: str,
                       labels: Mapping[str, str], networks: Mapping[str, Any],
                       volumes: Mapping[str, str], command: str) -> None:
    # A one-shot container from the API image with the API's mounts and environment:
    # ``migrate`` must run before the API starts (its fault columns need the tables).
    container = _create_container(client, api_spec, name, image, labels, networks, volumes,
                                  command=ops_argv(command)[3:])
    try:
        container.start()
        status = container.wait(timeout=OPS_TIMEOUT_S)
        if status.get("StatusCode") != 0:
            raise StackError(f"ops {command} failed: {_last_line(container.logs())}")
    finally:
        container.remove(force=True)


_PORTS_OPEN = ("import socket\n"
               "for port in {ports}:\n"
               "    socket.create_connection(('127.0.0.1', port), timeout=1).close()\n")


def _last_line(output: bytes | None) -> str:
    lines = [line for line in (output or b"").decode("utf-8", "replace").splitlines() if line.strip()]
    return lines[-1].strip()[:300] if lines else "no output"


def _exec_ok(container: Any, argv: Sequence[str]) -> bool:
    return bool(container.exec_run(list(argv)).exit_code == 0)


def _exec_output_has(container: Any, argv: Sequence[str], needles: Sequence[str]) -> bool:
    output = container.exec_run(list(argv)).output.decode("utf-8", "replace")
    return any(needle in output for needle in needles)


def _pg_accepts(server: postgres.PostgresServer) -> bool:
    try:
        with psycopg.connect(server.superuser_conninfo(), connect_timeout=2):
            return True
    except psycopg.OperationalError:
        return False


def _host_port(container: Any, container_port: int) -> int:
    container.reload()
    bindings = container.attrs["NetworkSettings"]["Ports"].get(f"{container_port}/tcp") or []
    for binding in bindings:
        if binding.get("HostIp") in (LOOPBACK, "", "0.0.0.0"):
            return int(binding["HostPort"])
    return 0


def _address_on(container: Any, network: str) -> str:
    """The container's IPv4 address on ``network`` (the host reaches internal networks too)."""
    container.reload()
    address = (container.attrs["NetworkSettings"]["Networks"].get(network) or {}).get("IPAddress")
    if not address:
        raise StackError(f"container {container.name} has no address on {network}")
    return str(address)


def _tls_context(ca_file: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca_file))


def _healthz_ok(https_port: int, ca_file: Path) -> bool:
    """Whether ``GET /healthz`` through the edge (TLS, verified for votriz.test) answers 200."""
    try:
        with socket.create_connection((LOOPBACK, https_port), timeout=2.0) as raw, \
                _tls_context(ca_file).wrap_socket(raw, server_hostname=EDGE_HOST) as tls:
            tls.sendall(f"GET /healthz HTTP/1.1\r\nHost: {EDGE_HOST}\r\nConnection: close\r\n\r\n"
                        .encode("ascii"))
            status_line = tls.recv(64).split(b"\r\n", 1)[0]
            return status_line.startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def _redirect_location(http_port: int) -> str:
    connection = http.client.HTTPConnection(LOOPBACK, http_port, timeout=2.0)
    try:
        connection.request("GET", "/", headers={"Host": EDGE_HOST})
        return connection.getresponse().getheader("Location") or ""
    except OSError:
        return ""
    finally:
        connection.close()


def _wait(ready: Callable[[], bool], what: str, container: Any,
          timeout_s: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        container.reload()
        if container.status not in ("created", "running"):
            raise StackError(f"{what}: container {container.name} is {container.status}: "
                             f"{_last_line(container.logs(tail=5))}")
        if container.status == "running" and ready():
            return
        if time.monotonic() > deadline:
            raise StackError(f"{what}: not ready after {timeout_s:.0f} s "
                             f"(docker logs {container.name}: {_last_line(container.logs(tail=5))})")
        time.sleep(POLL_S)


def render_docker_profile(state_dir: Path, project: str, containers: Mapping[str, str], *,
                          https_port: int, http_port: int, redis_address: str,
                          fakes_address: str) -> str:
    """The text of ``target.toml``: a harness TargetProfile for this Docker stack.

    The auditor runs on the Docker host and reaches what publishes nothing
    the way an operator of that host could: PostgreSQL through its unix
    socket (``STATE/run/pg``, bind-mounted), the HSM through the auditor's
    p11-kit socket (``STATE/run/p11-audit``), Redis and the fakes at their
    addresses on the internal network (a Linux host routes to its bridges).
    """
    import tomli_w

    package_dir = Path(__file__).resolve().parents[1]
    api = containers["api"]
    paths = StackPaths.under(state_dir)
    profile: dict[str, object] = {
        "schema_version": 1,
        "name": "votriz-reference-docker",
        "backend": "docker",
        "edge": {"host": EDGE_HOST, "address": LOOPBACK, "https_port": https_port,
                 "http_port": http_port, "trust_anchor": str(state_dir / "pki" / "ca.pem")},
        "api": {"base_path": "/api/v1", "canaries": True},
        "database": {
            "dsn": (f"host={paths.pg_socket_dir} port={topology.POSTGRES_PORT} "
                    f"dbname={postgres.DATABASE} user={postgres.AUDITOR_ROLE}"),
            "password": {"file": str(state_dir / "secrets" / "auditor-password")},
        },
        "hsm": {
            "module": str(topology.P11_CLIENT_MODULE),
            "token_label": softhsm.TOKEN_LABEL,
            "pin": {"file": str(paths.pin_file)},
            # Addresses and paths only: p11-kit's client finds the server through the first;
            # the second names SoftHSM's token directory, which only the HSM may hold open.
            "env": {"P11_KIT_SERVER_ADDRESS": f"unix:path={paths.p11_audit_dir / 'sock'}",
                    "SOFTHSM2_CONF": str(paths.softhsm_conf)},
            "key_namespace": softhsm.KEY_NAMESPACE,
        },
        "redis": {"host": redis_address, "port": topology.REDIS_PORT,
                  "password_hsm_label": softhsm.REDIS_PASSWORD},
        "capture": {"url": f"https://{fakes_address}:{topology.FAKES_PORT}",
                    "server_name": FAKES_HOST, "plaintext_port": topology.FAKES_PLAINTEXT_PORT},
        "docker": {"project": project, "edge_container": containers["edge"],
                   "log_dir": str(paths.logs_dir)},
        "scan": {"source_paths": [str(package_dir)],
                 "config_paths": [str(paths.api_config), str(paths.edge_config_dir / "nginx.conf"),
                                  str(paths.softhsm_conf)]},
        "operations": {
            "allow_destructive": True,
            **{name: ops_argv(command, api) for name, command in OPERATIONS.items()},
            "backup_dir": str(paths.backups_dir),
            "drill_log": str(paths.drill_log),
        },
    }
    header = "# Target profile of a Docker Votriz reference stack (written by `up`).\n"
    return header + tomli_w.dumps(profile)


def _stack_id(state_dir: Path) -> str | None:
    try:
        value = (state_dir / MARKER).read_text(encoding="ascii").strip()
    except OSError:
        return None
    return value if value.isalnum() else None


def _remove_objects(client: Any, stack_id: str) -> None:
    """Remove every container, network and volume labelled ``votriz.stack=<stack_id>``."""
    from docker.errors import NotFound

    selector = {"label": f"{topology.STACK_LABEL}={stack_id}"}
    for container in client.containers.list(all=True, filters=selector):
        with contextlib.suppress(NotFound):
            container.remove(force=True, v=True)
    for network in client.networks.list(filters=selector):
        with contextlib.suppress(NotFound):
            network.remove()
    for volume in client.volumes.list(filters=selector):
        with contextlib.suppress(NotFound):
            volume.remove(force=True)
    # Only images a fault built for this stack carry its label; the shared ones do not.
    for image in client.images.list(filters=selector):
        with contextlib.suppress(NotFound):
            client.images.remove(image.id, force=True)


def down(state_dir: Path, *, client: Any = None) -> None:
    """Remove the stack's containers, networks and volumes, then the state directory.

    Idempotent, and works after a half-failed ``up``. Only Docker objects
    labelled with this stack's id are touched.

    Raises:
        StackError: ``state_dir`` is not empty but was not made by ``up``.
    """
    state_dir = Path(state_dir).resolve()
    if not state_dir.exists():
        return
    stack_id = _stack_id(state_dir)
    if stack_id is None:
        if any(state_dir.iterdir()):
            raise StackError(f"{state_dir} was not created by the docker backend's up: not removing it")
        state_dir.rmdir()
        return
    own_client = client is None
    client = client or docker_client()
    try:
        _remove_objects(client, stack_id)
    finally:
        if own_client:
            client.close()
    shutil.rmtree(state_dir)


@dataclass(frozen=True)
class StackStatus:
    """Whether a stack's containers are running.

    Attributes:
        state_dir: the state directory.
        exists: whether it holds a stack that came up (``stack.json``).
        running: role → whether its container is running.
    """

    state_dir: Path
    exists: bool
    running: dict[str, bool] = field(hash=False)

    @property
    def healthy(self) -> bool:
        """Up, and every container running."""
        return self.exists and bool(self.running) and all(self.running.values())


def status(state_dir: Path, *, client: Any = None) -> StackStatus:
    """Which of the stack's containers are running."""
    from docker.errors import NotFound

    state_dir = Path(state_dir).resolve()
    stack_json = state_dir / "stack.json"
    if not stack_json.exists():
        return StackStatus(state_dir=state_dir, exists=False, running={})
    info = StackInfo.from_json(stack_json.read_text(encoding="utf-8"))
    own_client = client is None
    client = client or docker_client()
    running: dict[str, bool] = {}
    try:
        for role, name in info.containers.items():
            try:
                running[role] = client.containers.get(name).status == "running"
            except NotFound:
                running[role] = False
    finally:
        if own_client:
            client.close()
    return StackStatus(state_dir=state_dir, exists=True, running=running)


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


__all__ = ["StackError", "StackInfo", "StackStatus", "down", "render_docker_profile", "stack_objects",
           "status", "up", "validate_faults"]
