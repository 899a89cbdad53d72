"""Starting, waiting for and stopping the local stack's processes.

Every process is started detached (its own session, so a Ctrl-C in the
caller's terminal does not reach it), with its working directory inside the
state directory and a minimal environment. The working directory is what
makes a process recognisably ours: ``stop_process`` and ``sweep`` only ever
signal a process whose cwd lies inside the state directory, so a stale pid
file can never make us kill someone else's PostgreSQL or nginx.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from system_under_test.common.host import (
    BINARY_SEARCH_PATH,
    PACKAGE_OF_BINARY,
    StackError,
    base_environment,
    find_binary,
)

# How often the readiness loops look again. Short, because every loop is
# bounded by its own deadline and a ready service should be noticed at once.
POLL_INTERVAL_S = 0.05


@dataclass(frozen=True)
class ServiceUser:
    """The unprivileged account the stack's servers run as.

    Attributes:
        uid: numeric user id.
        gid: numeric group id.
        name: user name (for messages).
        drop_privileges: whether commands must be wrapped to switch to it
            (true only when the caller is root).
    """

    uid: int
    gid: int
    name: str
    drop_privileges: bool

    def argv(self, argv: Sequence[str], setpriv: str) -> list[str]:
        """Wrap ``argv`` so that it runs as this user (unchanged if no switch is needed)."""
        if not self.drop_privileges:
            return list(argv)
        return [setpriv, f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups",
                "--", *argv]

    def chown(self, path: Path) -> None:
        """Give ``path`` to this user (a no-op when we already are it)."""
        if self.drop_privileges:
            os.chown(path, self.uid, self.gid)


def service_user() -> ServiceUser:
    """The invoking user when not root, else ``nobody``/``nogroup`` (CONTRACT.md)."""
    if os.geteuid() != 0:
        return ServiceUser(os.geteuid(), os.getegid(), pwd.getpwuid(os.geteuid()).pw_name, False)
    nobody = pwd.getpwnam("nobody")
    try:
        gid = grp.getgrnam("nogroup").gr_gid
    except KeyError:
        gid = nobody.pw_gid
    return ServiceUser(nobody.pw_uid, gid, "nobody", True)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def spawn(argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], log_file: Path,
          pid_file: Path | None = None, stdin_data: bytes | None = None) -> int:
    """Start ``argv`` detached, output appended to ``log_file``; return its pid.

    ``stdin_data`` is written to the child's stdin and the pipe closed: how a
    secret reaches a child without touching disk or its argv/environment.
    The pid file is written at once, so ``down`` finds the process even if
    a later step of ``up`` fails.
    """
    with open(log_file, "ab") as log:
        process = subprocess.Popen(
            list(argv), cwd=cwd, env=dict(env), stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.PIPE if stdin_data is not None else subprocess.DEVNULL,
            start_new_session=True, close_fds=True,
        )
    if pid_file is not None:
        pid_file.write_text(f"{process.pid}\n", encoding="ascii")
    if stdin_data is not None:
        assert process.stdin is not None
        try:
            process.stdin.write(stdin_data)
        finally:
            process.stdin.close()
    # The child outlives this Popen object on purpose; forget it without a warning.
    process.returncode = 0
    return process.pid


def is_running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie (zombies of our own children are reaped)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return False
    # The state letter follows the parenthesised command name, which may hold spaces.
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X")


def belongs_to(pid: int, state_dir: Path) -> bool:
    """Whether process ``pid`` works inside ``state_dir``: the proof that we started it."""
    try:
        cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return False
    root = state_dir.resolve()
    return cwd == root or root in cwd.parents


def read_pid(pid_file: Path) -> int | None:
    """The pid in ``pid_file`` (first line), or None if absent or unreadable."""
    try:
        first = pid_file.read_text(encoding="ascii").split()[0]
        return int(first)
    except (OSError, ValueError, IndexError):
        return None


def wait_until(ready: Callable[[], bool], *, timeout_s: float, what: str,
               pid: int | None = None, log_file: Path | None = None) -> None:
    """Poll ``ready`` until true; StackError after ``timeout_s`` or if ``pid`` dies first."""
    deadline = time.monotonic() + timeout_s
    while True:
        if ready():
            return
        if pid is not None and not is_running(pid):
            raise StackError(f"{what}: the process exited during start{_log_hint(log_file)}")
        if time.monotonic() > deadline:
            raise StackError(f"{what}: not ready after {timeout_s:.0f} s{_log_hint(log_file)}")
        time.sleep(POLL_INTERVAL_S)


def _log_hint(log_file: Path | None) -> str:
    if log_file is None:
        return ""
    try:
        lines = [line for line in log_file.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return f" (see {log_file})"
    last = lines[-1].strip()[:200] if lines else "empty"
    return f" (see {log_file}; last line: {last})"


def tcp_accepts(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def stop_process(pid: int, state_dir: Path, *, sig: signal.Signals = signal.SIGTERM,
                 timeout_s: float = 10.0) -> bool:
    """Stop our process ``pid`` (and its process group); return whether one was stopped.

    Sends ``sig`` to the leader for a clean shutdown, waits up to ``timeout_s``,
    then SIGKILLs the whole group (workers, backends). Refuses silently when
    the process does not work inside ``state_dir``: then it is not ours.
    """
    if not is_running(pid) or not belongs_to(pid, state_dir):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + timeout_s
    while is_running(pid) and time.monotonic() < deadline:
        time.sleep(POLL_INTERVAL_S)
    if is_running(pid):
        # Every process was started as the leader of its own session, so the
        # group id is its pid and the group holds only its own descendants.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5.0
        while is_running(pid) and time.monotonic() < deadline:
            time.sleep(POLL_INTERVAL_S)
    return True


def processes_inside(state_dir: Path) -> list[int]:
    """Pids of live processes whose working directory lies inside ``state_dir``."""
    found = []
    own = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        if pid != own and belongs_to(pid, state_dir) and is_running(pid):
            found.append(pid)
    return found


def sweep(state_dir: Path, *, timeout_s: float = 5.0) -> list[int]:
    """SIGKILL every process still working inside ``state_dir``; return their pids.

    The safety net after the orderly stops: it catches a process that was
    started but whose pid file was never written.
    """
    leftovers = processes_inside(state_dir)
    for pid in leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout_s
    while any(is_running(pid) for pid in leftovers) and time.monotonic() < deadline:
        time.sleep(POLL_INTERVAL_S)
    return leftovers


# The host's binaries and environment are shared with the Docker backend (common.host);
# the local modules and their tests find them here, beside the process functions.
__all__ = [
    "BINARY_SEARCH_PATH",
    "PACKAGE_OF_BINARY",
    "POLL_INTERVAL_S",
    "ServiceUser",
    "StackError",
    "base_environment",
    "belongs_to",
    "find_binary",
    "free_port",
    "is_running",
    "processes_inside",
    "read_pid",
    "service_user",
    "spawn",
    "stop_process",
    "sweep",
    "tcp_accepts",
    "wait_until",
]
