"""``RunningStack``: the hands an independent auditor has on a running reference stack.

A violation (``system_under_test.violations``) is applied to a stack that
``up`` already started, the way an auditor applies one by hand: SQL as the
database superuser, files in the backup store, objects created in the HSM
with PKCS#11, an edited nginx configuration followed by a reload, a line
appended to a log. ``RunningStack.open(state_dir)`` finds everything from
the state directory alone, for either backend (its marker file says which),
so a violation is written once and works on both.

Where each part is reached:

============  =====================================  =====================================
part          local                                  docker
============  =====================================  =====================================
database      superuser over ``STATE/run`` (socket)  superuser over ``STATE/run/pg`` (bind-mounted socket)
backups       ``STATE/backups``                      ``STATE/backups`` (bind-mounted)
HSM           the profile's ``[hsm]``: SoftHSM2      the profile's ``[hsm]``: p11-kit client, auditor's socket
Redis         the profile's ``[redis]`` address      the profile's ``[redis]`` address (internal network)
edge config   ``STATE/nginx/nginx.conf``             ``STATE/docker/edge/nginx.conf`` (bind-mounted)
edge reload   SIGHUP to ``run/nginx.pid``            SIGHUP to the edge container
API log       ``STATE/logs/api.log``                 ``STATE/logs/api/api.log`` (bind-mounted)
============  =====================================  =====================================

PKCS#11: a process initialises a module once and SoftHSM reads
``SOFTHSM2_CONF`` only then, so one process can open the HSM of one stack
only. ``system_under_test.backends`` therefore applies each violation in a
child process (``python -m system_under_test.violations apply NAME
--state-dir STATE``); :meth:`RunningStack.hsm_session` refuses a second stack.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
import tomllib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from system_under_test.common import postgres_roles, softhsm
from system_under_test.common.host import StackError

LOCAL_MARKER = ".votriz-local-stack"
DOCKER_MARKER = ".votriz-docker-stack"
# Bound on every wait here: a reload, a connection, a statement.
TIMEOUT_S = 15.0
_SQL_TIMEOUT_MS = 15_000
# The (module, environment) this process initialised PKCS#11 with, once it has.
_pkcs11_loaded_for: tuple[str, tuple[tuple[str, str], ...]] | None = None


def _children(pid: int) -> set[int]:
    # A process's direct children, from /proc (every thread's list).
    found: set[int] = set()
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            text = (task / "children").read_text(encoding="ascii")
            found.update(int(part) for part in text.split())
    except (OSError, ValueError):
        pass
    return found


def _command_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text(encoding="utf-8").strip()
    except OSError:
        return ""


@dataclass(frozen=True)
class RunningStack:
    """A running reference stack, reached from its state directory.

    Attributes:
        state_dir: the stack's state directory (absolute).
        backend: ``local`` or ``docker`` (from the marker file ``up`` wrote).
        profile_path: ``STATE/target.toml``, the auditor's profile of the stack.
        profile: that profile, parsed.
        containers: role → container name (Docker only; empty for local).
    """

    state_dir: Path
    backend: str
    profile_path: Path
    profile: dict[str, Any]
    containers: dict[str, str]

    @classmethod
    def open(cls, state_dir: Path) -> RunningStack:
        """The stack in ``state_dir``; StackError if none came up there."""
        state_dir = Path(state_dir).resolve()
        if (state_dir / LOCAL_MARKER).exists():
            backend = "local"
        elif (state_dir / DOCKER_MARKER).exists():
            backend = "docker"
        else:
            raise StackError(f"{state_dir} holds no reference stack (no backend marker)")
        profile_path = state_dir / "target.toml"
        try:
            profile = tomllib.loads(profile_path.read_text(encoding="utf-8"))
            stack = json.loads((state_dir / "stack.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise StackError(f"{state_dir}: the stack did not finish coming up ({exc})") from None
        return cls(state_dir=state_dir, backend=backend, profile_path=profile_path, profile=profile,
                   containers=dict(stack.get("containers", {})))

    # ---- where things are -------------------------------------------------------------

    @property
    def api_url(self) -> str:
        """The edge's public base URL (``https://votriz.test:PORT``; pin votriz.test to 127.0.0.1)."""
        edge = self.profile["edge"]
        return f"https://{edge['host']}:{edge['https_port']}"

    @property
    def ca_file(self) -> Path:
        """The stack's CA certificate: the trust anchor of the edge."""
        return Path(self.profile["edge"]["trust_anchor"])

    @property
    def backup_dir(self) -> Path:
        """The backup store, as a host path (the Docker backend bind-mounts it)."""
        return Path(self.profile["operations"]["backup_dir"])

    @property
    def log_dir(self) -> Path:
        """The directory of the stack's logs on the host."""
        return self.state_dir / "logs"

    @property
    def api_log(self) -> Path:
        """The API's log file (gunicorn's error log with the app's captured output)."""
        return self.log_dir / ("api.log" if self.backend == "local" else "api/api.log")

    @property
    def edge_config(self) -> Path:
        """The running edge's nginx configuration, as a host path."""
        if self.backend == "local":
            return self.state_dir / "nginx" / "nginx.conf"
        return self.state_dir / "docker" / "edge" / "nginx.conf"

    # ---- database ---------------------------------------------------------------------

    def _superuser_conninfo(self) -> str:
        socket_dir = self.state_dir / "run" / ("pg" if self.backend == "docker" else "")
        port = re.search(r"\bport=(\d+)", self.profile["database"]["dsn"])
        if port is None:
            raise StackError(f"{self.profile_path}: the database dsn names no port")
        return (f"host={socket_dir} port={port.group(1)} dbname={postgres_roles.DATABASE} "
                f"user={postgres_roles.SUPERUSER} connect_timeout={int(TIMEOUT_S)}")

    def sql(self, statement: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Run one statement as the database superuser in its own committed transaction.

        Returns:
            The rows it returned (empty for a statement that returns none).
        """
        import psycopg

        with psycopg.connect(self._superuser_conninfo(),
                             options=f"-c statement_timeout={_SQL_TIMEOUT_MS}") as conn:
            cursor = conn.execute(statement, params)
            rows = cursor.fetchall() if cursor.description is not None else []
        return [tuple(row) for row in rows]

    # ---- HSM --------------------------------------------------------------------------

    @contextmanager
    def hsm_session(self) -> Iterator[Any]:
        """A read-write python-pkcs11 session on the service's token, logged in as the user.

        Opened with the profile's ``[hsm]`` (module, environment, PIN file): SoftHSM2
        locally, p11-kit's client on the auditor's socket for Docker. Raises StackError
        if this process already initialised PKCS#11 for another stack.
        """
        global _pkcs11_loaded_for
        import pkcs11

        hsm = self.profile["hsm"]
        module = str(hsm["module"])
        env = tuple(sorted((str(k), str(v)) for k, v in hsm.get("env", {}).items()))
        if _pkcs11_loaded_for is not None and _pkcs11_loaded_for != (module, env):
            raise StackError("this process already opened another stack's HSM: apply "
                             "violations in a child process (python -m system_under_test.violations)")
        os.environ.update(dict(env))
        _pkcs11_loaded_for = (module, env)
        pin = Path(hsm["pin"]["file"]).read_text(encoding="ascii").strip()
        token = pkcs11.lib(module).get_token(token_label=hsm["token_label"])
        with token.open(user_pin=pin, rw=True) as session:
            yield session

    def hsm_value(self, label: str) -> bytes:
        """The CKA_VALUE of the secret-key object ``label`` (for a violation that copies a key)."""
        from pkcs11 import Attribute, ObjectClass

        with self.hsm_session() as session:
            key = session.get_key(object_class=ObjectClass.SECRET_KEY, label=label)
            return bytes(key[Attribute.VALUE])

    # ---- Redis ------------------------------------------------------------------------

    def _redis_password(self) -> str:
        in_file = self.state_dir / "secrets" / "redis-password"
        if in_file.exists():  # key-not-in-hsm keeps it in a file
            return in_file.read_text(encoding="ascii").strip()
        return self.hsm_value(softhsm.REDIS_PASSWORD).decode("ascii")

    def redis(self) -> Any:
        """A ``redis.Redis`` client on the service's Redis, authenticated (password from the HSM)."""
        import redis

        section = self.profile["redis"]
        return redis.Redis(host=section["host"], port=int(section["port"]),
                           password=self._redis_password(), socket_timeout=TIMEOUT_S,
                           socket_connect_timeout=TIMEOUT_S)

    # ---- edge -------------------------------------------------------------------------

    def _edge_master_pid(self) -> int:
        if self.backend == "local":
            try:
                return int((self.state_dir / "run" / "nginx.pid").read_text(encoding="ascii").strip())
            except (OSError, ValueError) as exc:
                raise StackError(f"the edge's pid file cannot be read: {exc}") from None
        import docker

        client = docker.from_env(timeout=int(TIMEOUT_S))
        try:
            pid = int(client.containers.get(self.containers["edge"]).attrs["State"]["Pid"])
        finally:
            client.close()
        if pid <= 0:
            raise StackError("the edge container is not running")
        # The container's pid 1 is Docker's init (it reaps and forwards signals); nginx's
        # master is its child, and the workers to watch are the master's children.
        if _command_name(pid) == "nginx":
            return pid
        masters = [child for child in _children(pid) if _command_name(child) == "nginx"]
        if len(masters) != 1:
            raise StackError(f"the edge container's init has {len(masters)} nginx children, not 1")
        return masters[0]

    def edit_edge_config(self, transform: Callable[[str], str]) -> None:
        """Rewrite the running edge's nginx configuration with ``transform`` and reload nginx.

        The file is replaced by rename (nginx never reads half a file). The reload is
        a SIGHUP to the master; it has taken effect when the master has started a
        worker it did not have before and every old worker is gone: until the master's
        QUIT reaches them, old workers still accept connections with the old
        configuration (CI saw a TLS 1.2 handshake refused just after the first new
        worker appeared). StackError if the text did not change, if nginx logs that it
        refused the configuration (the old one stays in force), or if that is not so
        within the bound.
        """
        path = self.edge_config
        before = path.read_text(encoding="utf-8")
        after = transform(before)
        if after == before:
            raise StackError(f"the edit changed nothing in {path}")
        scratch = path.with_suffix(".violation")
        scratch.write_text(after, encoding="utf-8")
        scratch.chmod(path.stat().st_mode & 0o777)
        scratch.replace(path)
        master = self._edge_master_pid()
        workers = _children(master)
        log = self.log_dir / ("error.log" if self.backend == "local" else "edge/error.log")
        logged = log.stat().st_size if log.exists() else 0
        os.kill(master, signal.SIGHUP)
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            now = _children(master)
            if now - workers and not now & workers:
                return
            # nginx says at once when it keeps the old configuration ("[emerg] ...").
            with log.open("rb") as lines:
                lines.seek(logged)
                refused = [line for line in lines.read().decode("utf-8", "replace").splitlines()
                           if "[emerg]" in line]
            if refused:
                raise StackError(f"nginx refused the edited configuration: {refused[0][-200:]}")
            time.sleep(0.1)
        raise StackError(f"nginx did not reload within {TIMEOUT_S:.0f} s (see {log})")

    # ---- logs -------------------------------------------------------------------------

    def append_api_log(self, line: str) -> None:
        """Append ``line`` (one line, newline added) to the API's log, as the API would write it."""
        if "\n" in line:
            raise ValueError("one line only")
        with self.api_log.open("a", encoding="utf-8") as log:
            log.write(line + "\n")


__all__ = ["RunningStack", "StackError"]
