"""Bring the reference service up as Docker containers, and take it down again.

``up(state_dir, faults) -> StackInfo`` (``profile_path`` is the harness's
target profile), ``down(state_dir)``, ``status(state_dir)``, ``StackError``:
the interface every backend of ``system_under_test.backends`` has. The faults
become one provisioning plan (``system_under_test.provision``); what both
backends set up the same way comes from ``system_under_test.common``: the PKI,
the SoftHSM token and its keys (provisioned on the host into ``STATE/tokens``,
which only the HSM container mounts), the database roles, the Redis and nginx
configurations and ``api.toml``. The containers themselves are described
once, in ``topology.services()``; ``engine`` creates and removes them.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from system_under_test.common import mailbox, postgres_roles, softhsm
from system_under_test.common.edge import render_config as render_edge_config
from system_under_test.common.edge import tls_handshake_ok
from system_under_test.common.host import StackError, write_secret
from system_under_test.common.pki import EDGE_HOST, FAKES_HOST, build_pki, pki_paths
from system_under_test.common.profile import Ports, render_api_config
from system_under_test.common.redis_config import render_config as render_redis_config
from system_under_test.common.state_dir import StackStatus, ensure_unused
from system_under_test.docker import engine, readiness, topology
from system_under_test.docker import images as image_builds
from system_under_test.docker.engine import (
    address_on,
    docker_client,
    exec_ok,
    exec_output_has,
    host_port,
    image_with_baked_key,
    last_line,
    object_names,
    remove_objects,
    stack_labels,
    start_container,
)
from system_under_test.docker.target_profile import ops_sequence_argv, render_docker_profile
from system_under_test.docker.topology import StackPaths
from system_under_test.provision import DRILL_ON_RECORD, ProvisioningPlan, plan

STACK_SCHEMA_VERSION = 1
# Written first by ``up`` (it holds the stack id): ``down`` deletes only a directory that carries it.
MARKER = ".votriz-docker-stack"
#: Dovecot's own output as it starts (its config errors), in the mail directory.
DOVECOT_START_LOG = "dovecot.start.log"


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
    return plan(faults, "docker").faults


def _give_to_service_user(*paths: Path) -> None:
    # The containers run as uid 10001; files they read or write on bind mounts must be theirs.
    for path in paths:
        targets = [path, *path.rglob("*")] if path.is_dir() else [path]
        for target in targets:
            os.lchown(target, topology.SERVICE_UID, topology.SERVICE_GID)


def _prepare_state_dir(state_dir: Path, stack_id: str) -> None:
    ensure_unused(state_dir, MARKER)
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
    chosen = plan(faults, "docker")
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
        remove_objects(client, stack_id)
        # Keep the logs for diagnosis, but no secret outlives a failed start.
        for name in ("secrets", "tokens"):
            shutil.rmtree(state_dir / name, ignore_errors=True)
        raise
    finally:
        if own_client:
            client.close()


def _hba() -> str:
    # Like the local backend's rules, with the internal network ("samenet") in place of 127.0.0.1.
    app_roles = f"{postgres_roles.APP_ROLE},{postgres_roles.AUDITOR_ROLE}"
    return ("# Written by system_under_test.docker.\n"
            f"local   all  {postgres_roles.SUPERUSER}  trust\n"
            f"local   all  {app_roles}  scram-sha-256\n"
            f"host    all  {app_roles}  samenet  scram-sha-256\n")


def _bring_up(client: Any, state_dir: Path, stack_id: str, chosen: ProvisioningPlan,
              image_tags: Mapping[str, str], *, with_ops: bool) -> StackInfo:
    names = object_names(stack_id)
    paths = StackPaths.under(state_dir, redis_password_file=chosen.redis_password_in_file)
    pki = build_pki(paths.pki_dir, edge_lifetime=chosen.edge_lifetime)

    paths.pg_hba.write_text(_hba(), encoding="ascii")
    _write_edge_config(paths, chosen.edge_faults, topology.HTTPS_PORT, topology.HTTP_PORT)
    mail_layout = mailbox.MailboxLayout(host=paths.mail_dir, base=topology.MAIL_DIR)
    mailbox.prepare(mail_layout, state_dir / "secrets" / "mailbox-password", uid=topology.SERVICE_UID,
                    gid=topology.SERVICE_GID, user="votriz", group="votriz", listen="*",
                    port=mailbox.CONTAINER_PORT, cert=topology.CONTAINER_STATE / "pki" / "fakes.pem",
                    key=topology.CONTAINER_STATE / "pki" / "fakes.key")
    _give_to_service_user(pki.edge_key, pki.fakes_key)

    networks = {
        topology.PUBLIC: client.networks.create(f"{names['project']}-public", driver="bridge",
                                                labels=stack_labels(stack_id, "network")),
        topology.INTERNAL: client.networks.create(f"{names['project']}-internal", driver="bridge",
                                                  internal=True, labels=stack_labels(stack_id, "network")),
    }
    volumes = {key: client.volumes.create(f"{names['project']}-{key}",
                                          labels=stack_labels(stack_id, "volume")).name
               for key in topology.VOLUMES}
    # The API's environment (secrets under some faults) is known once the token is made.
    specs = {spec.role: spec for spec in topology.services(paths, chosen)}

    def start(role: str) -> Any:
        return start_container(client, specs[role], names[role], image_tags[specs[role].part],
                               stack_labels(stack_id, role), networks, volumes)

    def with_token(_stop: threading.Event) -> tuple[softhsm.StackSecrets, Any, Any]:
        # The token is made and filled on the host, exactly as for the local backend;
        # afterwards only the HSM container mounts its directory.
        keys = softhsm.provision_stack_token(state_dir, redis_password_file=paths.redis_password_file)
        # Redis reads its password with its configuration: a mounted secret file, like the PIN.
        # A second "bind" line overrides the local backend's loopback-only one.
        write_secret(paths.redis_config, render_redis_config(topology.CONTAINER_STATE, topology.REDIS_PORT,
                                                             keys.redis_password) + "bind 0.0.0.0\n")
        own = [paths.tokens_dir, paths.pin_file, paths.redis_config]
        if paths.redis_password_file is not None:
            own.append(paths.redis_password_file)
        _give_to_service_user(*own)
        hsm, rds = readiness.together([lambda _stop: start("hsm"), lambda _stop: start("redis")])
        return keys, hsm, rds

    # The containers start at once and each gets ready while the others do (measured at
    # load 3-5: 6 starts one after another took 4.3 s, the readiness waits one after another
    # 5.4 s, PostgreSQL's initdb the longest of them); the database, the fakes and the edge
    # need no secret of the token, so they start while it is provisioned (0.5 s at load 5,
    # 3.4-4.5 s at load 15).
    (keys, hsm, rds), db, fakes, edge = readiness.together(
        [with_token, *(lambda _stop, role=role: start(role) for role in ("db", "fakes", "edge"))])
    api_secrets = chosen.api_secret_environment(keys.token_key, keys.pin() if chosen.pin_in_env else "")
    specs["api"] = next(spec for spec in topology.services(paths, chosen, api_secrets=api_secrets)
                        if spec.role == "api")
    del api_secrets
    if chosen.token_key_in_image:
        image_tags = {**image_tags, "api": image_with_baked_key(
            client, image_tags["api"], stack_id, base64.urlsafe_b64encode(keys.token_key))}
    wait = readiness.wait

    def hsm_ready(stop: threading.Event) -> None:
        wait(lambda: exec_ok(hsm, ["test", "-S", str(topology.P11_SOCKET)]), "hsm (p11-kit socket)", hsm,
             stop=stop)
        wait(lambda: (paths.p11_audit_dir / "sock").is_socket(), "hsm (auditor's p11-kit socket)", hsm,
             stop=stop)

    def redis_ready(stop: threading.Event) -> None:
        wait(lambda: exec_output_has(rds, ["redis-cli", "-p", str(topology.REDIS_PORT), "PING"],
                                     ("NOAUTH", "PONG")), "redis", rds, stop=stop)

    def mailbox_ready(stop: threading.Event) -> None:
        # The auditor's mailbox: Dovecot in the fakes container (it daemonizes; the container's
        # end is its end). Its output goes to a file: the daemon holds the exec's own output
        # open for ~2 s after the command returned, and the exec waited for it (2.1 s -> 0.1 s).
        result = fakes.exec_run(["sh", "-c", 'exec dovecot -c "$1" >"$2" 2>&1 </dev/null', "dovecot",
                                 str(mail_layout.base / "dovecot.conf"),
                                 str(mail_layout.base / DOVECOT_START_LOG)],
                                user=f"{topology.SERVICE_UID}")
        if result.exit_code != 0:
            try:
                output = (mail_layout.host / DOVECOT_START_LOG).read_bytes() or result.output
            except OSError as exc:  # The shell could not even make its log.
                output = (result.output or b"") + f" ({DOVECOT_START_LOG}: {exc.strerror})".encode()
            raise StackError(f"mailbox (dovecot) did not start: {last_line(output)}")
        # Seen from this host (it reaches the internal network; the LMTP socket is in the bind-
        # mounted mail directory): a look costs no `docker exec` of a Python (~0.3 s each).
        address = address_on(fakes, networks[topology.INTERNAL].name)
        wait(lambda: readiness.ports_open(address, (topology.FAKES_PORT, topology.FAKES_PLAINTEXT_PORT,
                                                    mailbox.CONTAINER_PORT))
             and (mail_layout.host / mail_layout.lmtp_socket.relative_to(mail_layout.base)).is_socket(),
             "fakes and mailbox", fakes, stop=stop)

    # The edge's published ports are known once it started; the redirect and api.toml name them.
    https_port, http_port = host_port(edge, topology.HTTPS_PORT), host_port(edge, topology.HTTP_PORT)
    if not https_port or not http_port:
        raise StackError(f"edge: container {edge.name} publishes no port on {topology.HTTPS_PORT} "
                         f"or {topology.HTTP_PORT}")

    def edge_ready(stop: threading.Event) -> None:
        wait(lambda: tls_handshake_ok(https_port, pki.ca_cert), "edge (TLS handshake)", edge, stop=stop)
        # The redirect names the public port: rewrite the config and reload nginx.
        _write_edge_config(paths, chosen.edge_faults, https_port, http_port)
        edge.kill(signal="SIGHUP")
        if chosen.redirects_http:
            wait(lambda: f":{https_port}/" in readiness.redirect_location(http_port), "edge (reload)", edge,
                 stop=stop)

    passwords = {"app_password": keys.db_password, "auditor_password": keys.auditor_password}

    def db_ready(stop: threading.Event) -> None:
        pg = postgres_roles.PostgresServer(pid=0, port=topology.POSTGRES_PORT,
                                           pgdata=topology.CONTAINER_STATE / "pgdata",
                                           socket_dir=paths.pg_socket_dir, pid_file=Path("/nonexistent"),
                                           log_file=Path("/nonexistent"))
        wait(pg.accepts_connections, "db (postgres)", db, stop=stop)
        postgres_roles.create_roles(pg, **passwords)

    ports = Ports(https=https_port, http=http_port, postgres=topology.POSTGRES_PORT,
                  redis=topology.REDIS_PORT, fakes=topology.FAKES_PORT,
                  fakes_plaintext=topology.FAKES_PLAINTEXT_PORT)
    paths.api_config.write_text(render_api_config(
        topology.CONTAINER_STATE, ports, chosen,
        redis_password_file=topology.REDIS_PASSWORD_SECRET if paths.redis_password_file else None,
        stripe_api_key=keys.stripe_key if chosen.stripe_key_in_config else None,
        hosts={"postgres": "db", "redis": "redis", "fakes": FAKES_HOST},
        hsm_module=topology.P11_CLIENT_MODULE), encoding="utf-8")
    del keys

    def migrate_container(_stop: threading.Event) -> Any:
        # Created while the others get ready (it mounts api.toml: written above).
        return engine.create_ops_container(client, specs["api"], names["ops"], image_tags["api"],
                                           stack_labels(stack_id, "ops"), networks, volumes, "migrate")

    readied = readiness.together([hsm_ready, redis_ready, edge_ready, db_ready,
                                  *([migrate_container] if with_ops else [])])
    passwords.clear()
    if with_ops:
        engine.run_ops_container(readied[-1], "migrate")
    api = start("api")

    def api_ready(stop: threading.Event) -> None:
        wait(lambda: readiness.healthz_ok(https_port, pki.ca_cert), "api (/healthz through the edge)", api,
             stop=stop)

    def demo_data(_stop: threading.Event) -> None:
        # The demo data and the drill on record need the database and the HSM, not the API
        # server: they run while it starts, in one interpreter (each ``ops`` start costs ~1 s of
        # imports), and stop at the first command that fails.
        result = api.exec_run(ops_sequence_argv(("seed-demo", *DRILL_ON_RECORD)),
                              user=f"{topology.SERVICE_UID}")
        if result.exit_code != 0:
            raise StackError(f"ops failed: {last_line(result.output)}")

    # The mailbox is needed by the audit, not by the API's start: it gets ready meanwhile.
    readiness.together([api_ready, mailbox_ready, *([demo_data] if with_ops else [])])

    containers = {role: names[role] for role in specs}
    profile_path = state_dir / "target.toml"
    internal = networks[topology.INTERNAL].name
    fakes_address = address_on(fakes, internal)
    # The mailbox is reached where the capture is: the fakes' address on the internal network.
    mailbox_section = mailbox.profile_section(
        host=fakes_address, port=mailbox.CONTAINER_PORT, server_name=FAKES_HOST,
        password_file=state_dir / "secrets" / "mailbox-password", trust_anchor=pki.ca_cert)
    profile_path.write_text(render_docker_profile(
        state_dir, names["project"], containers, https_port=https_port, http_port=http_port,
        redis_address=address_on(rds, internal), fakes_address=fakes_address)
        + "\n" + tomli_w.dumps({"mailbox": mailbox_section}), encoding="utf-8")
    return StackInfo(state_dir=state_dir, stack_id=stack_id, project=names["project"],
                     faults=chosen.faults, containers=containers, https_port=https_port,
                     http_port=http_port, images=dict(image_tags), ca_file=pki.ca_cert,
                     api_config=paths.api_config, profile_path=profile_path)


def _write_edge_config(paths: StackPaths, edge_faults: Sequence[str], https_port: int,
                       http_port: int) -> None:
    text = render_edge_config(topology.CONTAINER_STATE, pki_paths(topology.CONTAINER_STATE / "pki"),
                              https_port=https_port, http_port=http_port, faults=edge_faults,
                              listen_address="0.0.0.0",
                              listen_ports=(topology.HTTPS_PORT, topology.HTTP_PORT))
    # Replaced by rename, so nginx never reads a half-written file on reload.
    target = paths.edge_config_dir / "nginx.conf"
    scratch = target.with_suffix(".tmp")
    scratch.write_text(text, encoding="utf-8")
    scratch.chmod(0o644)
    scratch.replace(target)


def _stack_id(state_dir: Path) -> str | None:
    try:
        value = (state_dir / MARKER).read_text(encoding="ascii").strip()
    except OSError:
        return None
    return value if value.isalnum() else None


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
        remove_objects(client, stack_id)
    finally:
        if own_client:
            client.close()
    shutil.rmtree(state_dir)


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


__all__ = ["MARKER", "StackError", "StackInfo", "StackStatus", "down", "status", "up", "validate_faults"]
