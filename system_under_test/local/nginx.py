"""The local edge: nginx, started as the service user with ``common.edge``'s configuration."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from system_under_test.common.edge import render_config, tls_handshake_ok
from system_under_test.common.pki import Pki
from system_under_test.local.processes import (
    ServiceUser,
    base_environment,
    find_binary,
    spawn,
    wait_until,
)

START_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class NginxServer:
    """A running edge.

    Attributes:
        pid: the master process's pid.
        https_port: TLS port on 127.0.0.1.
        http_port: plaintext port on 127.0.0.1.
        config_file: the rendered configuration.
        pid_file: ``STATE/run/nginx.pid``.
    """

    pid: int
    https_port: int
    http_port: int
    config_file: Path
    pid_file: Path


def start(state_dir: Path, user: ServiceUser, pki: Pki, *, https_port: int, http_port: int,
          faults: Collection[str] = (), search_path: Sequence[str] | None = None) -> NginxServer:
    """Render the configuration, start nginx as the service user, wait for a TLS handshake."""
    binary = find_binary("nginx", search_path)
    setpriv = find_binary("setpriv", search_path) if user.drop_privileges else ""
    work = state_dir / "nginx"
    work.mkdir(mode=0o755, exist_ok=True)
    (work / "empty").write_bytes(b"")
    user.chown(work)
    # nginx runs as the service user, so it must be able to read its key.
    user.chown(pki.edge_key)
    config_file = work / "nginx.conf"
    config_file.write_text(render_config(state_dir, pki, https_port=https_port,
                                         http_port=http_port, faults=faults), encoding="utf-8")
    log_file = state_dir / "logs" / "error.log"
    # nginx writes its pid file itself (as the service user, so it must create it).
    pid_file = state_dir / "run" / "nginx.pid"
    pid = spawn(user.argv([binary, "-p", str(work), "-c", str(config_file), "-e", str(log_file)],
                          setpriv),
                cwd=work, env=base_environment(), log_file=state_dir / "logs" / "nginx-stdout.log")
    wait_until(lambda: tls_handshake_ok(https_port, pki.ca_cert), timeout_s=START_TIMEOUT_S,
               what="nginx", pid=pid, log_file=log_file)
    return NginxServer(pid=pid, https_port=https_port, http_port=http_port,
                       config_file=config_file, pid_file=pid_file)
