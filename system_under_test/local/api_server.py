"""The API under gunicorn, and the operator commands the backend calls around it.

Gunicorn runs two uvicorn workers on ``STATE/run/api.sock`` with
``--preload`` (the code is imported once, in the master): each worker reads its
keys from the HSM when it starts (``system_under_test.api.asgi``), so a rolling
restart (``ops.workers``) is how a rotation reaches the running API. The
environment names files and paths only (``VOTRIZ_CONFIG``,
``VOTRIZ_HSM_PIN_FILE``, ``SOFTHSM2_CONF``); the stack faults ``key-in-env``
and ``pin-in-env`` are the only way a secret gets into it. The worker class
(``system_under_test.api.worker``) is uvicorn's with a shutdown that lets a
connection accepted just before the HUP deliver its request instead of
resetting it.

Gunicorn and the ops commands run as the invoking user: when that is root
they stay root, because the Python they need lives under /root, out of the
service user's reach.
"""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from system_under_test.local.processes import StackError, base_environment, spawn, wait_until

DEFAULT_APP = "system_under_test.api.asgi:app"
WORKERS = 2
START_TIMEOUT_S = 30.0
OPS_TIMEOUT_S = 180.0
# The directory that holds the system_under_test package, for the children's PYTHONPATH.
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class ApiServer:
    """The running gunicorn master.

    Attributes:
        pid: the master's pid (workers are its children).
        socket_path: ``STATE/run/api.sock``.
        plaintext_port: the extra TCP port of the ``api-plaintext-exposed`` fault, else None.
        pid_file: ``STATE/run/gunicorn.pid``.
        log_file: ``STATE/logs/api.log``.
    """

    pid: int
    socket_path: Path
    plaintext_port: int | None
    pid_file: Path
    log_file: Path


def api_environment(state_dir: Path, hsm_env: Mapping[str, str],
                    extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment of the API and the ops commands: paths only, plus any fault's extras."""
    env = base_environment(
        PYTHONPATH=str(REPO_ROOT),
        VOTRIZ_CONFIG=str(state_dir / "api.toml"),
        VOTRIZ_HSM_PIN_FILE=str(state_dir / "secrets" / "hsm-pin"),
        PYTHONUNBUFFERED="1",
        **hsm_env,
    )
    env.update(extra or {})
    return env


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: Path) -> None:
        super().__init__("localhost", timeout=2.0)
        self._path = str(path)

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


def healthz_ok(socket_path: Path) -> bool:
    """Whether ``GET /healthz`` on the API's unix socket answers 200."""
    if not socket_path.exists():
        return False
    connection = _UnixHTTPConnection(socket_path)
    try:
        connection.request("GET", "/healthz", headers={"Host": "votriz.test"})
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def ops_argv(state_dir: Path, command: str, *args: str) -> list[str]:
    """The argv of one operator command, as the profile's ``operations`` list it."""
    return [sys.executable, "-m", "system_under_test.ops", command, *args,
            "--state-dir", str(state_dir)]


def run_ops(state_dir: Path, command: str, env: Mapping[str, str]) -> str:
    """Run an operator command to completion; its output goes to ``STATE/logs/ops.log``.

    Returns the command's last output line (its one-line JSON report).
    """
    log_file = state_dir / "logs" / "ops.log"
    try:
        result = subprocess.run(ops_argv(state_dir, command), cwd=state_dir, env=dict(env),
                                capture_output=True, text=True, timeout=OPS_TIMEOUT_S,
                                check=False)
    except subprocess.TimeoutExpired:
        raise StackError(f"ops {command}: no answer after {OPS_TIMEOUT_S:.0f} s") from None
    with open(log_file, "a", encoding="utf-8") as log:
        log.write(f"--- ops {command} (exit {result.returncode})\n{result.stdout}{result.stderr}")
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    last = lines[-1].strip()[:300] if lines else "no output"
    if result.returncode != 0:
        raise StackError(f"ops {command} failed: {last} (see {log_file})")
    return last


def start(state_dir: Path, env: Mapping[str, str], *, app: str = DEFAULT_APP,
          plaintext_port: int | None = None) -> ApiServer:
    """Start gunicorn and wait until ``/healthz`` answers through the unix socket."""
    socket_path = state_dir / "run" / "api.sock"
    pid_file = state_dir / "run" / "gunicorn.pid"
    log_file = state_dir / "logs" / "api.log"
    argv = [sys.executable, "-m", "gunicorn", app,
            "-k", "system_under_test.api.worker.GracefulUvicornWorker", "-w", str(WORKERS),
            "--preload", "--bind", f"unix:{socket_path}", "--pid", str(pid_file),
            # The socket must be connectable by nginx, which runs as the service
            # user; umask 0 gives it 0777. The log is created 0640 beforehand, so
            # the umask does not make it world-writable.
            "--umask", "0",
            "--error-logfile", str(log_file), "--capture-output",
            "--graceful-timeout", "10", "--timeout", "30",
            # gunicorn >= 25.1 otherwise opens a management socket (worker count, reload,
            # shutdown) under $HOME or $XDG_RUNTIME_DIR, shared by every stack of one user,
            # and stops and restarts its thread around every fork of a roll
            "--no-control-socket"]
    if plaintext_port is not None:
        argv += ["--bind", f"127.0.0.1:{plaintext_port}"]
    fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    os.close(fd)
    # gunicorn writes its own pid file; it is the pid spawn returns, as gunicorn does not fork away.
    pid = spawn(argv, cwd=state_dir, env=env, log_file=log_file)
    wait_until(lambda: healthz_ok(socket_path), timeout_s=START_TIMEOUT_S, what="api (gunicorn)",
               pid=pid, log_file=log_file)
    return ApiServer(pid=pid, socket_path=socket_path, plaintext_port=plaintext_port,
                     pid_file=pid_file, log_file=log_file)
