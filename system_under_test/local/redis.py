"""Redis for one stack, run by the service user, with its password from the HSM.

The whole configuration, ``requirepass`` included, reaches ``redis-server -``
on its stdin, so the password is never written to disk, never on a command
line and never in an environment. Persistence is off: Redis holds only
rate-limit counters, which may be lost.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from system_under_test.common.redis_config import render_config
from system_under_test.local.processes import (
    ServiceUser,
    find_binary,
    spawn,
    wait_until,
)

START_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class RedisServer:
    """A running Redis.

    Attributes:
        pid: its pid.
        port: its TCP port on 127.0.0.1.
        pid_file: ``STATE/run/redis.pid``.
        log_file: ``STATE/logs/redis.log``.
    """

    pid: int
    port: int
    pid_file: Path
    log_file: Path


def _command(*parts: str) -> bytes:
    encoded = [part.encode() for part in parts]
    return b"".join([f"*{len(encoded)}\r\n".encode()]
                    + [b"$%d\r\n%s\r\n" % (len(part), part) for part in encoded])


def answers_ping(port: int, password: str) -> bool:
    """Whether Redis on ``port`` accepts ``password`` and answers PING."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(_command("AUTH", password) + _command("PING"))
            received = b""
            while received.count(b"\r\n") < 2:
                chunk = sock.recv(256)
                if not chunk:
                    break
                received += chunk
            return received.startswith(b"+OK\r\n+PONG")
    except OSError:
        return False


def start(state_dir: Path, user: ServiceUser, *, port: int, password: str,
          search_path: Sequence[str] | None = None) -> RedisServer:
    """Start ``redis-server -`` as the service user and wait until it answers PING."""
    binary = find_binary("redis-server", search_path)
    setpriv = find_binary("setpriv", search_path) if user.drop_privileges else ""
    data_dir = state_dir / "redis"
    data_dir.mkdir(mode=0o700, exist_ok=True)
    user.chown(data_dir)
    pid_file = state_dir / "run" / "redis.pid"
    log_file = state_dir / "logs" / "redis.log"
    # Redis's own log file is opened by Redis; early errors go to our stdout capture.
    pid = spawn(user.argv([binary, "-"], setpriv), cwd=data_dir, env={"LANG": "C.UTF-8"},
                log_file=state_dir / "logs" / "redis-stdout.log", pid_file=pid_file,
                stdin_data=render_config(state_dir, port, password).encode())
    wait_until(lambda: answers_ping(port, password), timeout_s=START_TIMEOUT_S, what="redis",
               pid=pid, log_file=log_file)
    return RedisServer(pid=pid, port=port, pid_file=pid_file, log_file=log_file)
