"""What a backend needs from the host: its binaries, a clean environment, secret files.

``StackError`` is the one error a step of bringing a stack up or down
raises, whichever backend takes it; its message is one clear line.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

# Package that provides each binary the stack runs, for the one-line
# "not found" message. Keys are binary names as looked up on the search path.
PACKAGE_OF_BINARY: dict[str, str] = {
    "initdb": "postgresql-15",
    "postgres": "postgresql-15",
    "nginx": "nginx-light",
    "redis-server": "redis-server",
    "softhsm2-util": "softhsm2",
    "setpriv": "util-linux",
    "dovecot": "dovecot-imapd dovecot-lmtpd",
}

# Debian puts PostgreSQL's server binaries outside PATH and nginx in sbin,
# which a non-login PATH may lack; search these as well.
BINARY_SEARCH_PATH: tuple[str, ...] = (
    "/usr/lib/postgresql/15/bin",
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
)

class StackError(RuntimeError):
    """A step of bringing a stack up or down failed; the message is one clear line."""


def find_binary(name: str, search_path: Sequence[str] | None = None) -> str:
    """Absolute path of ``name``, or StackError naming the Debian package to install."""
    for directory in search_path if search_path is not None else BINARY_SEARCH_PATH:
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    package = PACKAGE_OF_BINARY.get(name, name)
    raise StackError(f"{name} not found: apt-get install {package}")


def base_environment(**extra: str) -> dict[str, str]:
    """A minimal environment for a child: no inherited variables, so no stray secret."""
    env = {
        "PATH": ":".join(BINARY_SEARCH_PATH),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
    }
    env.update(extra)
    return env


def write_secret(path: Path, value: str) -> None:
    """Write ``value`` and a newline to ``path``, created with mode 0600 (never readable by others)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(value + "\n")


__all__ = ["BINARY_SEARCH_PATH", "PACKAGE_OF_BINARY", "StackError", "base_environment", "find_binary",
           "write_secret"]
