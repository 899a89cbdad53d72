"""The one definition of the Docker topology: which containers, on which networks, with what.

``services()`` returns one ``ServiceSpec`` per container for a stack and its
provisioning plan (``system_under_test.provision``); ``stack.py`` only turns
these into Docker objects, and the tests read the same data. Clean topology:

- a public bridge network (the edge only) and an internal bridge network
  (``internal=True``: no route outside) for api, db, redis, hsm and fakes;
  the edge is on both;
- only the edge publishes ports: 443 and 80, bound to 127.0.0.1 on host
  ports the engine chooses;
- the HSM container runs ``p11-kit server`` in front of SoftHSM2; its socket
  reaches the API through a volume, so the API holds no token file; a second
  server's socket (no uid check) is bind-mounted to the host only, for the
  auditor;
- the API reaches the edge through a unix socket in a shared volume (it has
  no TCP listener), reads its PIN from a read-only bind-mounted secret file
  and names only paths in its environment.

Container faults: ``db-port-published`` (the db publishes 5432, which Docker
only does for a container on a routable network, so the db joins the public
network too), ``host-network`` (the HSM runs on the host's network; its
socket still works, so the stack stays functional), ``key-in-env`` and
``pin-in-env`` (a secret in the API's environment).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from system_under_test.provision import ProvisioningPlan

PROJECT_LABEL = "votriz.project"
ROLE_LABEL = "votriz.role"
STACK_LABEL = "votriz.stack"
# The labels Docker Compose puts on what it creates; the stack carries them too, so an
# auditor selects its containers the way it would a Compose deployment's.
COMPOSE_PROJECT_LABEL = "com.docker.compose.project"
COMPOSE_SERVICE_LABEL = "com.docker.compose.service"
COMPOSE_ONEOFF_LABEL = "com.docker.compose.oneoff"
COMPOSE_NUMBER_LABEL = "com.docker.compose.container-number"
# Roles that are long-running services; ``ops`` is a one-shot (``docker compose run``-like).
SERVICE_ROLES: tuple[str, ...] = ("hsm", "db", "redis", "fakes", "edge", "api")
ONE_SHOT_ROLES: tuple[str, ...] = ("ops",)
# The fakes stand in for the internet (Anthropic, Resend, the platforms), not for a part of
# the deployment: they are composed as a project of their own, so an auditor who selects the
# service's Compose project sees what production has, and no fake among its containers.
UPSTREAM_ROLES: tuple[str, ...] = ("fakes",)
UPSTREAM_PROJECT_SUFFIX = "-upstream"
# The numeric user every part runs as (images/install-packages.sh creates it).
SERVICE_UID = 10001
SERVICE_GID = 10001

CONTAINER_STATE = Path("/var/lib/votriz")
P11_SOCKET_DIR = Path("/run/p11")
P11_SOCKET = P11_SOCKET_DIR / "sock"
# The auditor's socket: bind-mounted from the host (STATE/run/p11-audit) into the HSM only.
P11_AUDIT_DIR = Path("/run/p11-audit")
P11_CLIENT_MODULE = Path("/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so")
PIN_SECRET = Path("/run/secrets/hsm-pin")
SOFTHSM_CONF = CONTAINER_STATE / "softhsm2.conf"
REDIS_CONFIG_SECRET = Path("/run/secrets/redis.conf")
REDIS_PASSWORD_SECRET = Path("/run/secrets/redis-password")
PG_SOCKET_DIR = Path("/var/run/votriz-pg")
# The auditor's mailbox (Dovecot), run in the fakes container beside the Resend fake that
# delivers into it: STATE/mail mounted here.
MAIL_DIR = CONTAINER_STATE / "mail"
CONFIG_DIR = Path("/etc/votriz")

HTTPS_PORT, HTTP_PORT = 443, 80
POSTGRES_PORT, REDIS_PORT = 5432, 6379
FAKES_PORT, FAKES_PLAINTEXT_PORT = 8443, 8080
API_PLAINTEXT_PORT = 8000

PUBLIC, INTERNAL = "public", "internal"
# Named volumes, by key: the p11-kit socket, the API's socket (+ pid files), the database.
VOLUMES: tuple[str, ...] = ("p11", "run", "pgdata")


@dataclass(frozen=True)
class Mount:
    """A bind mount (``source`` is a host path) or a named volume (``volume`` is its key).

    Attributes:
        target: path inside the container.
        source: host path of a bind mount, or None for a volume.
        volume: key in ``VOLUMES`` of a named volume, or None for a bind mount.
        read_only: mounted read-only.
    """

    target: Path
    source: Path | None = None
    volume: str | None = None
    read_only: bool = True


@dataclass(frozen=True)
class ServiceSpec:
    """One container of the stack.

    Attributes:
        role: the ``votriz.role`` label: edge, api, db, redis, hsm or fakes.
        part: the image part it runs (``images/PART``).
        networks: keys of the networks it joins (``public``, ``internal``), first one at create.
        aliases: extra DNS names on the internal network.
        mounts: bind mounts and volumes.
        environment: its environment (paths and addresses, except under key-in-env/pin-in-env).
        ports: container port → host address to publish on (the engine picks the host port).
        network_mode: ``host`` under the host-network fault, else None (its networks).
        command: argv replacing the image's CMD, or None.
    """

    role: str
    part: str
    networks: tuple[str, ...]
    aliases: tuple[str, ...] = ()
    mounts: tuple[Mount, ...] = ()
    environment: Mapping[str, str] = field(default_factory=dict)
    ports: Mapping[str, str] = field(default_factory=dict)
    network_mode: str | None = None
    command: tuple[str, ...] | None = None


@dataclass(frozen=True)
class StackPaths:
    """Host files a stack's containers mount, all under STATE.

    Attributes:
        state_dir: the state directory.
        pki_dir: ``STATE/pki``.
        tokens_dir: SoftHSM's token directory (mounted into the HSM container only).
        softhsm_conf: ``STATE/softhsm2.conf`` (names ``tokens_dir`` by its host path).
        pin_file: the HSM user PIN (0600, owned by the service user).
        redis_config: Redis's configuration with its password (0600, owned by the service user).
        redis_password_file: the Redis password as a file, only under key-not-in-hsm.
        api_config: ``STATE/docker/api.toml``.
        edge_config_dir: ``STATE/docker/edge`` (holds ``nginx.conf``).
        pg_hba: ``STATE/docker/pg_hba.conf``.
        pg_socket_dir: ``STATE/run/pg``: the db's unix socket, reached from the host by
            ``up`` and by the auditor.
        p11_audit_dir: ``STATE/run/p11-audit``: the HSM's socket for the auditor on the host.
        logs_dir: ``STATE/logs`` (one subdirectory per role).
        mail_dir: ``STATE/mail``: the auditor's mailbox (Dovecot in the fakes container).
        backups_dir: ``STATE/backups``.
        drill_log: ``STATE/drills.log`` (the restore drill's log).
    """

    state_dir: Path
    pki_dir: Path
    tokens_dir: Path
    softhsm_conf: Path
    pin_file: Path
    redis_config: Path
    redis_password_file: Path | None
    api_config: Path
    edge_config_dir: Path
    pg_hba: Path
    pg_socket_dir: Path
    p11_audit_dir: Path
    logs_dir: Path
    mail_dir: Path
    backups_dir: Path
    drill_log: Path

    @classmethod
    def under(cls, state_dir: Path, *, redis_password_file: bool = False) -> StackPaths:
        """The layout under ``state_dir``."""
        return cls(
            state_dir=state_dir, pki_dir=state_dir / "pki", tokens_dir=state_dir / "tokens",
            softhsm_conf=state_dir / "softhsm2.conf", pin_file=state_dir / "secrets" / "hsm-pin",
            redis_config=state_dir / "secrets" / "redis.conf",
            redis_password_file=state_dir / "secrets" / "redis-password" if redis_password_file else None,
            api_config=state_dir / "docker" / "api.toml", edge_config_dir=state_dir / "docker" / "edge",
            pg_hba=state_dir / "docker" / "pg_hba.conf", pg_socket_dir=state_dir / "run" / "pg",
            p11_audit_dir=state_dir / "run" / "p11-audit",
            logs_dir=state_dir / "logs", mail_dir=state_dir / "mail", backups_dir=state_dir / "backups",
            drill_log=state_dir / "drills.log",
        )


def api_environment(secrets: Mapping[str, str] | None = None) -> dict[str, str]:
    """The API's (and the ops commands') environment: paths and a socket address.

    ``secrets`` holds what key-in-env / pin-in-env deliberately add.
    """
    env = {
        "VOTRIZ_CONFIG": str(CONTAINER_STATE / "api.toml"),
        "VOTRIZ_HSM_PIN_FILE": str(PIN_SECRET),
        # p11-kit 0.24's client reads the server address only from here: a path, not a secret.
        "P11_KIT_SERVER_ADDRESS": f"unix:path={P11_SOCKET}",
    }
    env.update(secrets or {})
    return env


def api_mounts(paths: StackPaths) -> tuple[Mount, ...]:
    """What the API container and the one-shot ops containers mount (no token file among them)."""
    mounts = [
        Mount(P11_SOCKET_DIR, volume="p11", read_only=False),
        Mount(CONTAINER_STATE / "run", volume="run", read_only=False),
        Mount(CONTAINER_STATE / "api.toml", source=paths.api_config),
        Mount(CONTAINER_STATE / "pki" / "ca.pem", source=paths.pki_dir / "ca.pem"),
        Mount(PIN_SECRET, source=paths.pin_file),
        Mount(CONTAINER_STATE / "logs", source=paths.logs_dir / "api", read_only=False),
        Mount(CONTAINER_STATE / "backups", source=paths.backups_dir, read_only=False),
        # The restore drill appends here; on the host it is the profile's operations.drill_log.
        Mount(CONTAINER_STATE / "drills.log", source=paths.drill_log, read_only=False),
    ]
    if paths.redis_password_file is not None:
        mounts.append(Mount(REDIS_PASSWORD_SECRET, source=paths.redis_password_file))
    return tuple(mounts)


def api_command(plan: ProvisioningPlan) -> tuple[str, ...]:
    """Gunicorn as in the local backend: two workers, preloaded code (keys read per worker,
    see ``system_under_test.api.asgi``), unix socket for the edge."""
    argv = ["gunicorn", "system_under_test.api.asgi:app",
            "-k", "system_under_test.api.worker.GracefulUvicornWorker", "-w", "2", "--preload",
            "--bind", f"unix:{CONTAINER_STATE / 'run' / 'api.sock'}",
            "--pid", str(CONTAINER_STATE / "run" / "gunicorn.pid"), "--umask", "0",
            "--error-logfile", str(CONTAINER_STATE / "logs" / "api.log"), "--capture-output",
            "--graceful-timeout", "10", "--timeout", "30", "--no-control-socket"]
    if plan.api_plaintext_port:
        argv += ["--bind", f"0.0.0.0:{API_PLAINTEXT_PORT}"]
    return tuple(argv)


def services(paths: StackPaths, plan: ProvisioningPlan, *,
             api_secrets: Mapping[str, str] | None = None) -> tuple[ServiceSpec, ...]:
    """Every container of the stack, in start order (hsm, db, redis, fakes, edge, api)."""
    db_networks = (INTERNAL, PUBLIC) if plan.db_port_published else (INTERNAL,)
    pki = paths.pki_dir
    return (
        ServiceSpec(
            role="hsm", part="hsm", networks=(INTERNAL,),
            network_mode="host" if plan.hsm_on_host_network else None,
            mounts=(
                Mount(P11_SOCKET_DIR, volume="p11", read_only=False),
                Mount(P11_AUDIT_DIR, source=paths.p11_audit_dir, read_only=False),
                # SoftHSM's config names the token directory by its host path, so the
                # directory is mounted at that same path: one config for both backends.
                Mount(paths.tokens_dir, source=paths.tokens_dir, read_only=False),
                Mount(SOFTHSM_CONF, source=paths.softhsm_conf),
            ),
            # Debian's /etc/softhsm is readable by group softhsm only; a path, not a secret.
            environment={"SOFTHSM2_CONF": str(SOFTHSM_CONF)},
        ),
        ServiceSpec(
            role="db", part="db", networks=db_networks, aliases=("db",),
            mounts=(
                Mount(CONTAINER_STATE / "pgdata", volume="pgdata", read_only=False),
                Mount(PG_SOCKET_DIR, source=paths.pg_socket_dir, read_only=False),
                Mount(CONFIG_DIR / "pg_hba.conf", source=paths.pg_hba),
            ),
            ports={f"{POSTGRES_PORT}/tcp": "127.0.0.1"} if plan.db_port_published else {},
        ),
        ServiceSpec(
            role="redis", part="redis", networks=(INTERNAL,), aliases=("redis",),
            mounts=(Mount(REDIS_CONFIG_SECRET, source=paths.redis_config),
                    Mount(CONTAINER_STATE / "logs", source=paths.logs_dir / "redis", read_only=False)),
        ),
        ServiceSpec(
            role="fakes", part="fakes", networks=(INTERNAL,), aliases=("fakes.votriz.test",),
            mounts=(Mount(CONTAINER_STATE / "pki" / "fakes.pem", source=pki / "fakes.pem"),
                    Mount(CONTAINER_STATE / "pki" / "fakes.key", source=pki / "fakes.key"),
                    Mount(MAIL_DIR, source=paths.mail_dir, read_only=False)),
            command=fakes_command(),
        ),
        ServiceSpec(
            role="edge", part="edge", networks=(PUBLIC, INTERNAL), aliases=("edge",),
            mounts=(
                Mount(CONFIG_DIR, source=paths.edge_config_dir),
                Mount(CONTAINER_STATE / "pki" / "edge.pem", source=pki / "edge.pem"),
                Mount(CONTAINER_STATE / "pki" / "edge.key", source=pki / "edge.key"),
                Mount(CONTAINER_STATE / "run", volume="run", read_only=False),
                Mount(CONTAINER_STATE / "logs", source=paths.logs_dir / "edge", read_only=False),
            ),
            ports={f"{HTTPS_PORT}/tcp": "127.0.0.1", f"{HTTP_PORT}/tcp": "127.0.0.1"},
        ),
        ServiceSpec(
            role="api", part="api", networks=(INTERNAL,), aliases=("api",),
            mounts=api_mounts(paths), environment=api_environment(api_secrets),
            command=api_command(plan),
        ),
    )


def fakes_command() -> tuple[str, ...]:
    """The fakes as the image runs them, with the Resend fake delivering into the mailbox."""
    return ("python", "-m", "system_under_test.docker.fakes_server", "--state-dir", str(CONTAINER_STATE),
            "--port", str(FAKES_PORT), "--plaintext-port", str(FAKES_PLAINTEXT_PORT),
            "--lmtp-socket", str(MAIL_DIR / "run" / "lmtp"))


def compose_labels(project: str, role: str) -> dict[str, str]:
    """The labels Compose would put on the stack's object of ``role``.

    A service's container: project, service, ``oneoff=False`` and container number 1
    (one replica each); a one-shot container: ``oneoff=True``; a network or volume:
    the project only. The fakes are in the project ``PROJECT-upstream``.
    """
    labels = {COMPOSE_PROJECT_LABEL: project + (UPSTREAM_PROJECT_SUFFIX if role in UPSTREAM_ROLES else "")}
    if role in SERVICE_ROLES or role in ONE_SHOT_ROLES:
        labels.update({COMPOSE_SERVICE_LABEL: role, COMPOSE_NUMBER_LABEL: "1",
                       COMPOSE_ONEOFF_LABEL: "True" if role in ONE_SHOT_ROLES else "False"})
    return labels


def role_log_dirs() -> tuple[str, ...]:
    """Roles whose logs are bind-mounted under ``STATE/logs/ROLE``."""
    return ("api", "redis", "edge")
