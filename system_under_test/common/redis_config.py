"""Redis's configuration, for both backends (given on stdin locally, a mounted secret in Docker)."""

from __future__ import annotations

from pathlib import Path


def render_config(state_dir: Path, port: int, password: str) -> str:
    """The configuration text given on stdin (it holds the password: never write it out)."""
    return "\n".join((
        "bind 127.0.0.1",
        f"port {port}",
        "protected-mode yes",
        "daemonize no",
        f"dir {state_dir / 'redis'}",
        'save ""',
        "appendonly no",
        f"logfile {state_dir / 'logs' / 'redis.log'}",
        f"requirepass {password}",
        "",
    ))
