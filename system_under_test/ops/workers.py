"""Rolling the API's gunicorn workers so that they read the keys again.

A clean roll adds new workers first (TTIN to the gunicorn master, once per
worker): each builds its application and so reads the HSM afresh
(``system_under_test.api.asgi``; the code itself is preloaded in the master). Only when each has
logged that its application started are the old ones removed (TTOU: gunicorn
stops the oldest workers first, gracefully). The listening socket stays open
and ready workers serve throughout, so no request is refused or waits for a
worker that is still loading (HUP would stop the old workers at once). The
``rotation-drops-requests`` fault instead stops the master with TERM and
starts a new one, which leaves a window with nobody listening.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from system_under_test.ops.context import OpsContext, OpsError

ROLL_TIMEOUT_S = 60.0
#: How often the roll looks again at what it waits for: /proc, the API's log, its socket.
#: Each look costs well under a millisecond (measured in the API container: /proc of ~30
#: processes 0.3 ms); at 0.1 s, with five waits in a roll, the looks alone added ~0.3 s to each.
POLL_S = 0.01


@dataclass(frozen=True)
class Roll:
    """What one roll of the workers did.

    Attributes:
        mode: ``rolling`` (new workers first) or ``restart`` (master stopped and started again).
        master_pid: the gunicorn master after the roll.
        old_workers: worker pids before.
        new_workers: worker pids after (none in common with ``old_workers``).
        seconds: how long until every new worker was there and the API answered.
    """

    mode: str
    master_pid: int
    old_workers: tuple[int, ...]
    new_workers: tuple[int, ...]
    seconds: float

    def summary(self) -> dict[str, object]:
        """The JSON-ready form printed by the commands."""
        return {"mode": self.mode, "workers": len(self.new_workers),
                "seconds": round(self.seconds, 2)}


def _pid_file(ctx: OpsContext) -> Path:
    return ctx.state_dir / "run" / "gunicorn.pid"


def master_pid(ctx: OpsContext) -> int:
    """The gunicorn master's pid from ``STATE/run/gunicorn.pid``, checked to be alive."""
    try:
        pid = int(_pid_file(ctx).read_text(encoding="ascii").strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        raise OpsError(f"no running gunicorn master in {_pid_file(ctx)}") from None
    return pid


def process_stat_fields() -> Iterator[tuple[int, list[str]]]:
    """(pid, the fields of ``/proc/PID/stat`` after the command name) of every process now.

    Fields start at the state, so ``fields[1]`` is the parent pid and ``fields[11]``,
    ``fields[12]`` the user and system clock ticks; a process gone meanwhile is skipped.
    """
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="ascii", errors="replace") as handle:
                stat = handle.read()
        except OSError:
            continue
        # The command name is in parentheses and may contain spaces: split after it.
        yield int(entry.name), stat[stat.rfind(")") + 2:].split()


def worker_pids(master: int) -> set[int]:
    """Pids whose parent is ``master`` (gunicorn's workers), from /proc."""
    return {pid for pid, fields in process_stat_fields() if len(fields) > 1 and fields[1] == str(master)}


class _UnixConnection(http.client.HTTPConnection):
    """HTTP over the API's unix socket."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("api", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


def api_answers(ctx: OpsContext) -> bool:
    """Whether ``GET /healthz`` on the API's own socket answers 200 right now.

    With the standard library's client: every rotation rolls, and importing httpx for this
    one request was ~0.09 s of each ``ops`` start.
    """
    listen = ctx.config.listen
    if listen.startswith("unix:"):
        connection: http.client.HTTPConnection = _UnixConnection(listen.removeprefix("unix:"), 2.0)
    else:
        host, _, port = listen.rpartition(":")
        connection = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=2.0)
    try:
        connection.request("GET", "/healthz", headers={"Connection": "close"})
        return connection.getresponse().status == 200
    except (OSError, http.client.HTTPException, ValueError):
        return False
    finally:
        connection.close()


def _wait_for_new_workers(ctx: OpsContext, master: int, old: set[int], count: int,
                          deadline: float) -> set[int]:
    while time.monotonic() < deadline:
        current = worker_pids(master)
        alive_old = {pid for pid in old if _alive(pid)}
        if len(current) >= count and not current & old and not alive_old and api_answers(ctx):
            return current
        time.sleep(POLL_S)
    raise OpsError(f"gunicorn workers did not roll within {ROLL_TIMEOUT_S:.0f} s")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    # A zombie is dead for our purpose: it serves nothing.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


# gunicorn's log line of a uvicorn worker whose application has started: "[time] [PID] [INFO] ...".
_STARTED = re.compile(rb"\[(\d+)\] \[INFO\] Application startup complete")


def _started_since(log_file: Path, offset: int) -> set[int]:
    """Pids that logged "Application startup complete" after byte ``offset`` of the API's log."""
    try:
        with log_file.open("rb") as handle:
            handle.seek(offset)
            return {int(pid) for pid in _STARTED.findall(handle.read())}
    except OSError:
        return set()


def _add_then_retire(ctx: OpsContext, master: int, old: set[int], count: int, deadline: float) -> None:
    """``count`` new workers (TTIN), wait until each has started its application, then retire
    as many of the oldest (TTOU): the old ones, since gunicorn stops the oldest first."""
    log_file = ctx.state_dir / "logs" / "api.log"
    try:
        offset = log_file.stat().st_size
    except OSError:
        offset = 0
    forked: set[int] = set()
    for _ in range(count):
        # One at a time: two TTIN sent before the master takes the first may count as one.
        # The next goes as soon as the new worker of this one exists (a fork, seen in /proc;
        # a fixed 0.1 s pause here was 0.2 s of every roll).
        os.kill(master, signal.SIGTTIN)
        forked |= _next_fork(master, old | forked, deadline)
    while True:
        fresh = worker_pids(master) - old
        if len(fresh & _started_since(log_file, offset)) >= count:
            break
        if time.monotonic() > deadline:
            raise OpsError(f"new gunicorn workers did not start within {ROLL_TIMEOUT_S:.0f} s")
        time.sleep(POLL_S)
    listeners = _socket_inodes(master)
    for _ in range(count):
        # Likewise one at a time (a TTOU lost to the one before it would leave an old worker
        # serving): the next once the master has stopped one more old worker, seen as that
        # worker closing the listening socket it shares with the master (its first step on
        # TERM, ~0.1 s), or gone. Its requests in flight are still answered meanwhile.
        serving = _serving(old, listeners)
        if not serving:
            break
        os.kill(master, signal.SIGTTOU)
        while len(_serving(old, listeners)) >= len(serving):
            if time.monotonic() > deadline:
                raise OpsError(f"old gunicorn workers did not stop within {ROLL_TIMEOUT_S:.0f} s")
            time.sleep(POLL_S)


def _socket_inodes(pid: int) -> set[str]:
    """The sockets ``pid`` holds (``socket:[INODE]``); the master's one is where it listens."""
    fd_dir = f"/proc/{pid}/fd"
    inodes = set()
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return set()
    for name in names:
        try:
            target = os.readlink(f"{fd_dir}/{name}")
        except OSError:
            continue
        if target.startswith("socket:"):
            inodes.add(target)
    return inodes


def _serving(pids: set[int], listeners: set[str]) -> set[int]:
    """The workers of ``pids`` alive and still holding a listening socket of the master (alive,
    when the master's sockets cannot be read)."""
    return {pid for pid in pids if _alive(pid) and (not listeners or _socket_inodes(pid) & listeners)}


def _next_fork(master: int, known: set[int], deadline: float) -> set[int]:
    """The master's children not in ``known``, once there is one (OpsError at ``deadline``)."""
    while True:
        new = worker_pids(master) - known
        if new:
            return new
        if time.monotonic() > deadline:
            raise OpsError(f"gunicorn started no new worker within {ROLL_TIMEOUT_S:.0f} s")
        time.sleep(POLL_S)


def roll_workers(ctx: OpsContext, *, timeout_s: float = ROLL_TIMEOUT_S) -> Roll:
    """Make every API worker a new process that has read the HSM after this call started."""
    started = time.monotonic()
    deadline = started + timeout_s
    master = master_pid(ctx)
    old = worker_pids(master)
    count = max(len(old), 1)
    if ctx.has_fault("rotation-drops-requests"):
        master = _restart_master(ctx, master, deadline)
        mode = "restart"
    else:
        _add_then_retire(ctx, master, old, count, deadline)
        mode = "rolling"
    new = _wait_for_new_workers(ctx, master, old, count, deadline)
    return Roll(mode, master, tuple(sorted(old)), tuple(sorted(new)),
                time.monotonic() - started)


def _restart_master(ctx: OpsContext, master: int, deadline: float) -> int:
    """The fault's hard restart: TERM the master, wait, start the same command again."""
    proc = Path(f"/proc/{master}")
    try:
        argv = (proc / "cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        environ = dict(item.split(b"=", 1) for item in
                       (proc / "environ").read_bytes().split(b"\0") if b"=" in item)
        cwd = os.readlink(proc / "cwd")
        status = (proc / "status").read_text(encoding="ascii")
    except OSError as exc:
        raise OpsError(f"cannot read the gunicorn master's command line: {exc.strerror}") from None
    uid = int(next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:")))
    gid = int(next(line.split()[1] for line in status.splitlines() if line.startswith("Gid:")))
    os.kill(master, signal.SIGTERM)
    while _alive(master) and time.monotonic() < deadline:
        time.sleep(POLL_S)
    if _alive(master):
        raise OpsError("the gunicorn master did not stop")
    log_file = ctx.state_dir / "logs" / "api.log"
    as_other = os.geteuid() == 0 and uid != 0
    with open(log_file, "ab") as log:
        child = subprocess.Popen(
            [a.decode() for a in argv], cwd=cwd,
            env={k.decode(): v.decode() for k, v in environ.items()},
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, close_fds=True,
            user=uid if as_other else None, group=gid if as_other else None,
            extra_groups=[] if as_other else None)
    # gunicorn writes its pid file itself when started with --pid; make sure it is right.
    _pid_file(ctx).write_text(f"{child.pid}\n", encoding="ascii")
    return child.pid
