"""Bring a whole local stack up, report on it, and take it down.

``up`` starts, in order: PKI, SoftHSM token and keys, PostgreSQL, Redis, the
fakes and the auditor's mailbox (Dovecot, ``system_under_test.common.mailbox``),
``ops migrate``, gunicorn (the API), nginx (the edge), ``ops
seed-demo``, ``ops backup`` and ``ops restore-drill`` (the drill on record);
then writes ``STATE/stack.json`` and ``STATE/target.toml``.
Every wait polls a socket or an answer and is bounded. If a step fails,
everything already started is stopped again, the secrets are removed, and
the logs stay for diagnosis until ``down``.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import signal
import stat
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from system_under_test.common import mailbox, postgres_roles, softhsm
from system_under_test.common.pki import EDGE_HOST, Pki, build_pki
from system_under_test.common.profile import Ports, render_api_config, render_target_profile
from system_under_test.common.state_dir import StackStatus, ensure_unused
from system_under_test.local import api_server, nginx, postgres, redis
from system_under_test.local.processes import (
    BINARY_SEARCH_PATH,
    ServiceUser,
    StackError,
    base_environment,
    find_binary,
    free_port,
    is_running,
    read_pid,
    service_user,
    spawn,
    stop_process,
    sweep,
    tcp_accepts,
    wait_until,
)
from system_under_test.provision import DRILL_ON_RECORD, ProvisioningPlan, plan

STACK_SCHEMA_VERSION = 1
# Written first by ``up``: ``down`` deletes only a directory that carries it.
MARKER = ".votriz-local-stack"
FAKES_START_TIMEOUT_S = 20.0
# Binaries checked before anything starts, so a missing package is one clear line.
PREREQUISITES = ("initdb", "postgres", "nginx", "redis-server", "softhsm2-util", "dovecot")

# How each process is stopped: pid files to look in, and the signal for a
# clean, quick shutdown (PostgreSQL: SIGINT is "fast" shutdown). The order
# is the reverse of the start order, so nothing serves while what it needs is gone.
_STOP_ORDER: tuple[tuple[str, tuple[str, ...], signal.Signals], ...] = (
    ("nginx", ("run/nginx.pid",), signal.SIGTERM),
    ("api", ("run/gunicorn.pid",), signal.SIGTERM),
    ("fakes", ("run/fakes.pid",), signal.SIGTERM),
    ("mailbox", ("run/mailbox.pid",), signal.SIGTERM),
    ("redis", ("run/redis.pid",), signal.SIGTERM),
    ("postgres", ("run/postgres.pid", "pgdata/postmaster.pid"), signal.SIGINT),
)


@dataclass(frozen=True)
class StackInfo:
    """What ``up`` started, as recorded in ``STATE/stack.json``.

    Attributes:
        state_dir: the state directory (absolute).
        faults: the faults switched on.
        ports: every TCP port in use.
        pids: process name → pid (``api`` is the gunicorn master).
        pid_files: process name → pid file.
        api_socket: the API's unix socket.
        ca_file: the local CA (trust anchor of the edge and the fakes).
        api_config: ``STATE/api.toml``.
        profile_path: ``STATE/target.toml``.
        started_in_s: how long ``up`` took.
        step_seconds: how long each step of ``up`` took, in start order.
    """

    state_dir: Path
    faults: tuple[str, ...]
    ports: Ports
    pids: dict[str, int] = field(hash=False)
    pid_files: dict[str, Path] = field(hash=False)
    api_socket: Path
    ca_file: Path
    api_config: Path
    profile_path: Path
    started_in_s: float
    step_seconds: dict[str, float] = field(default_factory=dict, hash=False)

    @property
    def base_url(self) -> str:
        """The edge's public URL (``votriz.test`` must resolve to 127.0.0.1 or be pinned)."""
        return f"https://{EDGE_HOST}:{self.ports.https}"

    @property
    def capture_url(self) -> str:
        """Base URL of the fakes' capture API."""
        return f"https://127.0.0.1:{self.ports.fakes}"

    def to_json(self) -> str:
        """The ``stack.json`` text."""
        data = asdict(self)
        data = json.loads(json.dumps(data, default=str))
        data["schema_version"] = STACK_SCHEMA_VERSION
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> StackInfo:
        """Read a ``stack.json`` written by ``to_json``."""
        data = json.loads(text)
        data.pop("schema_version", None)
        return cls(
            state_dir=Path(data["state_dir"]), faults=tuple(data["faults"]),
            ports=Ports(**data["ports"]), pids={k: int(v) for k, v in data["pids"].items()},
            pid_files={k: Path(v) for k, v in data["pid_files"].items()},
            api_socket=Path(data["api_socket"]), ca_file=Path(data["ca_file"]),
            api_config=Path(data["api_config"]), profile_path=Path(data["profile_path"]),
            started_in_s=float(data["started_in_s"]),
            step_seconds={k: float(v) for k, v in data.get("step_seconds", {}).items()},
        )


def validate_faults(faults: Sequence[str]) -> tuple[str, ...]:
    """The faults, deduplicated and sorted; ValueError naming the known ones otherwise."""
    return plan(faults, "local").faults


def check_prerequisites(search_path: Sequence[str] | None = None) -> None:
    """StackError naming the Debian package of the first missing binary."""
    for name in PREREQUISITES:
        find_binary(name, search_path)
    if os.geteuid() == 0:
        find_binary("setpriv", search_path)
    if not softhsm.MODULE.is_file():
        raise StackError(f"{softhsm.MODULE} not found: apt-get install softhsm2")


def _check_reachable(state_dir: Path, user: ServiceUser) -> None:
    # The service user must be able to walk down to STATE (its sockets, data, logs).
    if not user.drop_privileges:
        return
    for ancestor in [state_dir, *state_dir.parents]:
        info = ancestor.stat()
        if info.st_uid != user.uid and not info.st_mode & stat.S_IXOTH:
            raise StackError(f"{ancestor} is not searchable by {user.name}: "
                             "use a state directory under /tmp or a world-searchable path")


def _prepare_state_dir(state_dir: Path, user: ServiceUser) -> None:
    ensure_unused(state_dir, MARKER)
    state_dir.mkdir(parents=True, exist_ok=True)
    # Searchable, not listable, by others: the service user needs to reach its own subtrees.
    state_dir.chmod(0o711)
    (state_dir / MARKER).write_text("created by system_under_test.local.up\n", encoding="ascii")
    _check_reachable(state_dir, user)
    for name, mode, service_owned in (("run", 0o755, True), ("logs", 0o755, True),
                                      ("pki", 0o755, False), ("secrets", 0o700, False),
                                      ("backups", 0o700, False)):
        path = state_dir / name
        path.mkdir(mode=mode)
        path.chmod(mode)
        if service_owned:
            user.chown(path)


def _choose_ports(chosen: ProvisioningPlan) -> Ports:
    # Eight distinct ports; the kernel hands out different ones while they
    # are requested in quick succession, but check anyway.
    ports: list[int] = []
    while len(ports) < 8:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return Ports(https=ports[0], http=ports[1], postgres=ports[2], redis=ports[3],
                 fakes=ports[4], fakes_plaintext=ports[5],
                 api_plaintext=ports[6] if chosen.api_plaintext_port else None, mailbox=ports[7])


def _mailbox_layout(state_dir: Path) -> mailbox.MailboxLayout:
    return mailbox.MailboxLayout(host=state_dir / "mail", base=state_dir / "mail")


def spawn_mailbox(state_dir: Path, port: int, pki: Pki, user: ServiceUser,
                  search_path: Sequence[str] | None = None) -> int:
    """Start Dovecot, without root, as the service user: the auditor's mailbox (see
    common.mailbox), under ``STATE/mail``, its pid in ``STATE/run/mailbox.pid``."""
    layout = _mailbox_layout(state_dir)
    mailbox.prepare(layout, state_dir / "secrets" / "mailbox-password", uid=user.uid, gid=user.gid,
                    user=pwd.getpwuid(user.uid).pw_name, group=grp.getgrgid(user.gid).gr_name,
                    listen="127.0.0.1", port=port, cert=layout.base / "tls.pem",
                    key=layout.base / "tls.key", copy_tls_from=(pki.fakes_cert, pki.fakes_key))
    dovecot = find_binary("dovecot", search_path)
    setpriv = find_binary("setpriv", search_path) if user.drop_privileges else ""
    return spawn(user.argv([dovecot, "-F", "-c", str(layout.config)], setpriv), cwd=layout.host,
                 env=base_environment(), log_file=layout.host / "stdout.log",
                 pid_file=state_dir / "run" / "mailbox.pid")


def wait_for_mailbox(state_dir: Path, port: int, pid: int) -> None:
    """Wait (bounded) until the mailbox accepts IMAPS connections and LMTP deliveries."""
    lmtp = _mailbox_layout(state_dir).lmtp_socket
    wait_until(lambda: tcp_accepts(port) and lmtp.is_socket(), timeout_s=FAKES_START_TIMEOUT_S,
               what="mailbox (dovecot)", pid=pid, log_file=_mailbox_layout(state_dir).log_file)


def _spawn_fakes(state_dir: Path, ports: Ports) -> int:
    return spawn([sys.executable, "-m", "system_under_test.fakes",
                  "--state-dir", str(state_dir), "--port", str(ports.fakes),
                  "--plaintext-port", str(ports.fakes_plaintext),
                  "--lmtp-socket", str(_mailbox_layout(state_dir).lmtp_socket)],
                 cwd=state_dir, env=base_environment(PYTHONPATH=str(api_server.REPO_ROOT)),
                 log_file=state_dir / "logs" / "fakes.log",
                 pid_file=state_dir / "run" / "fakes.pid")


def _wait_for_fakes(state_dir: Path, ports: Ports, pid: int) -> None:
    wait_until(lambda: tcp_accepts(ports.fakes) and tcp_accepts(ports.fakes_plaintext),
               timeout_s=FAKES_START_TIMEOUT_S, what="fakes", pid=pid,
               log_file=state_dir / "logs" / "fakes.log")


def up(state_dir: Path, faults: Sequence[str] = (), *, api_app: str = api_server.DEFAULT_APP,
       with_ops: bool = True, search_path: Sequence[str] | None = None) -> StackInfo:
    """Start a complete local stack under ``state_dir`` with ``faults`` switched on.

    ``api_app`` and ``with_ops`` (run ``ops migrate`` and ``ops seed-demo``)
    exist for the backend's own tests, which can run a stand-in ASGI app
    without the real API; everyone else keeps the defaults.

    Raises:
        ValueError: a fault is unknown or not applicable locally.
        StackError: a prerequisite is missing or a step failed (already
            started processes are stopped again).
    """
    started = time.monotonic()
    chosen = plan(faults, "local")
    check_prerequisites(search_path)
    state_dir = Path(state_dir).resolve()
    user = service_user()
    _prepare_state_dir(state_dir, user)
    try:
        return _bring_up(state_dir, chosen, user, started, api_app=api_app,
                         with_ops=with_ops, search_path=search_path)
    except BaseException:
        _stop_all(state_dir)
        # Keep the logs for diagnosis, but no secret outlives a failed start.
        for name in ("secrets", "tokens"):
            shutil.rmtree(state_dir / name, ignore_errors=True)
        raise


def _bring_up(state_dir: Path, chosen: ProvisioningPlan, user: ServiceUser, started: float, *,
              api_app: str, with_ops: bool, search_path: Sequence[str] | None) -> StackInfo:
    steps: dict[str, float] = {}
    last = [time.monotonic()]

    def mark(step: str) -> None:
        now = time.monotonic()
        steps[step] = round(now - last[0], 2)
        last[0] = now

    ports = _choose_ports(chosen)
    pki = build_pki(state_dir / "pki", edge_lifetime=chosen.edge_lifetime)

    # initdb and the fakes need nothing from the HSM: start both now and
    # collect them later, so that their start overlaps the HSM work.
    initdb = postgres.begin_init_cluster(state_dir, user, search_path=search_path)
    fakes_pid = _spawn_fakes(state_dir, ports)
    assert ports.mailbox is not None
    mailbox_pid = spawn_mailbox(state_dir, ports.mailbox, pki, user, search_path)
    mark("pki")

    # HSM: token, PINs and every key; under key-not-in-hsm the Redis password
    # goes to a file instead of the token.
    redis_password_file = state_dir / "secrets" / "redis-password" if chosen.redis_password_in_file else None
    keys = softhsm.provision_stack_token(state_dir, redis_password_file=redis_password_file,
                                        search_path=search_path)
    mark("hsm")
    postgres.finish_init_cluster(state_dir, initdb, port=ports.postgres)
    mark("initdb")
    pg = postgres.start(state_dir, user, port=ports.postgres, search_path=search_path)
    mark("postgres")
    postgres_roles.create_roles(pg, app_password=keys.db_password, auditor_password=keys.auditor_password)
    mark("roles")
    rds = redis.start(state_dir, user, port=ports.redis, password=keys.redis_password,
                      search_path=search_path)
    mark("redis")
    _wait_for_fakes(state_dir, ports, fakes_pid)
    wait_for_mailbox(state_dir, ports.mailbox, mailbox_pid)
    mark("fakes")

    api_config = state_dir / "api.toml"
    api_config.write_text(render_api_config(
        state_dir, ports, chosen, redis_password_file=redis_password_file,
        stripe_api_key=keys.stripe_key if chosen.stripe_key_in_config else None,
    ), encoding="utf-8")
    fault_env = chosen.api_secret_environment(keys.token_key, keys.pin() if chosen.pin_in_env else "")
    token = keys.token
    del keys
    ops_env = api_server.api_environment(state_dir, token.environment())
    if with_ops:
        api_server.run_ops(state_dir, "migrate", ops_env)
    mark("migrate")
    api = api_server.start(state_dir, api_server.api_environment(state_dir, token.environment(),
                                                                 fault_env),
                           app=api_app, plaintext_port=ports.api_plaintext)
    mark("api")
    edge = nginx.start(state_dir, user, pki, https_port=ports.https, http_port=ports.http,
                       faults=chosen.edge_faults, search_path=search_path)
    mark("nginx")
    if with_ops:
        api_server.run_ops(state_dir, "seed-demo", ops_env)
    mark("seed-demo")
    if with_ops:
        for command in DRILL_ON_RECORD:
            api_server.run_ops(state_dir, command, ops_env)
    mark("drill-on-record")

    pid_files = {"api": api.pid_file, "nginx": edge.pid_file, "postgres": pg.pid_file,
                 "redis": rds.pid_file, "fakes": state_dir / "run" / "fakes.pid",
                 "mailbox": state_dir / "run" / "mailbox.pid"}
    profile_path = state_dir / "target.toml"
    # The fakes stand in for the internet (the LLM, Resend, the platforms) and the mailbox is
    # the auditor's: neither is among the service's processes, so the profile does not name
    # them (the Docker stack puts the fakes in a Compose project of their own for the same reason).
    service = {name: path for name, path in pid_files.items() if name not in ("fakes", "mailbox")}
    profile_path.write_text(render_target_profile(state_dir, ports, service,
                                                  nginx_config=edge.config_file),
                            encoding="utf-8")
    info = StackInfo(
        state_dir=state_dir, faults=chosen.faults, ports=ports,
        pids={"api": api.pid, "nginx": edge.pid, "postgres": pg.pid, "redis": rds.pid,
              "fakes": fakes_pid, "mailbox": mailbox_pid},
        pid_files=pid_files, api_socket=api.socket_path, ca_file=pki.ca_cert,
        api_config=api_config, profile_path=profile_path,
        started_in_s=round(time.monotonic() - started, 2), step_seconds=steps,
    )
    (state_dir / "stack.json").write_text(info.to_json(), encoding="utf-8")
    return info


def _known_pids(state_dir: Path) -> dict[str, set[int]]:
    pids: dict[str, set[int]] = {name: set() for name, _, _ in _STOP_ORDER}
    for name, files, _ in _STOP_ORDER:
        for relative in files:
            pid = read_pid(state_dir / relative)
            if pid is not None:
                pids[name].add(pid)
    try:
        recorded = json.loads((state_dir / "stack.json").read_text(encoding="utf-8"))["pids"]
        for name, pid in recorded.items():
            pids.setdefault(name, set()).add(int(pid))
    except (OSError, ValueError, KeyError):
        pass
    return pids


def _stop_all(state_dir: Path) -> None:
    known = _known_pids(state_dir)
    for name, _, sig in _STOP_ORDER:
        for pid in known.get(name, ()):
            stop_process(pid, state_dir, sig=sig, timeout_s=15.0)
    sweep(state_dir)


def down(state_dir: Path) -> None:
    """Stop every process of the stack in ``state_dir`` and remove the directory.

    Idempotent, and works after a half-failed ``up``. Only processes working
    inside ``state_dir`` are ever signalled.

    Raises:
        StackError: ``state_dir`` is not empty but was not made by ``up``.
    """
    state_dir = Path(state_dir).resolve()
    if not state_dir.exists():
        return
    if not (state_dir / MARKER).exists() and any(state_dir.iterdir()):
        raise StackError(f"{state_dir} was not created by up: not removing it")
    _stop_all(state_dir)
    shutil.rmtree(state_dir)


def status(state_dir: Path) -> StackStatus:
    """Which of the stack's processes are alive."""
    state_dir = Path(state_dir).resolve()
    stack_json = state_dir / "stack.json"
    if not stack_json.exists():
        return StackStatus(state_dir=state_dir, exists=False, running={})
    info = StackInfo.from_json(stack_json.read_text(encoding="utf-8"))
    running = {}
    for name, recorded in info.pids.items():
        # A pid file is newer than stack.json when a process was restarted
        # since (a rotation under rotation-drops-requests restarts gunicorn).
        pid = read_pid(info.pid_files[name]) if name in info.pid_files else None
        running[name] = is_running(pid if pid is not None else recorded)
    return StackStatus(state_dir=state_dir, exists=True, running=running)


__all__ = [
    "BINARY_SEARCH_PATH",
    "StackError",
    "StackInfo",
    "StackStatus",
    "check_prerequisites",
    "down",
    "status",
    "up",
    "validate_faults",
]
