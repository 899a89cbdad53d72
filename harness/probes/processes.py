"""The process probe (local backend): the service's processes, their environments and open files.

A process is found through the pid file the profile names, then its children
(gunicorn workers) through ``/proc/*/stat``. For each process the probe reads
``/proc/PID/environ`` and the targets of ``/proc/PID/fd/*``. Environment values
may hold secrets: they are kept out of ``repr`` and out of evidence, which names
variables only.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import safe_files
from harness.outcomes import ProbeError
from harness.probes import containers as containers_probe
from harness.probes.docker_engine import project_containers
from harness.profile import Local, Process

PROC = Path("/proc")


@dataclass(frozen=True)
class ProcessObservation:
    """One running process of the service.

    Attributes:
        name: the profile's name for the process (children get ``NAME/child``).
        pid: its pid.
        ppid: its parent's pid.
        comm: the kernel's short command name.
        environ: the environment as (name, value) pairs; values never printed.
        environ_error: why the environment could not be read ('' when it was).
        open_files: targets of its open file descriptors (paths, ``socket:[…]``, …).
        fd_error: why its descriptors could not be read ('' when they were).
    """

    name: str
    pid: int
    ppid: int
    comm: str
    environ: tuple[tuple[str, bytes], ...] = field(repr=False)
    environ_error: str = ""
    open_files: tuple[str, ...] = ()
    fd_error: str = ""

    @property
    def where(self) -> str:
        """How evidence names this process: ``api[pid 123 gunicorn]``."""
        if self.pid == 0:
            return f"{self.name}[{self.comm}]"
        return f"{self.name}[pid {self.pid} {self.comm}]"

    def variable_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.environ)


#: Bytes read at most from a pid file (a pid and a newline; nginx and PostgreSQL add a few lines).
PID_FILE_CAP = 4096


def read_pid_file(name: str, path: Path, *, wait_s: float = 2.0) -> int:
    """The pid in the profile's pid file of process ``name``: a regular file (a FIFO, device or
    directory is refused without blocking), at most :data:`PID_FILE_CAP` bytes, whose first word
    is a pid.

    A pid file may be briefly absent while its server replaces it (gunicorn writes a temporary
    file and renames it): a missing file is looked for again for ``wait_s``.

    Raises:
        ProbeError: one line naming the process, the file and why.
    """
    deadline = time.monotonic() + wait_s
    while True:
        try:
            text = safe_files.read_text(path, "pid file", PID_FILE_CAP)
            break
        except safe_files.FileRefused as exc:
            if path.exists() or time.monotonic() >= deadline:
                raise ProbeError(f"process {name}: {exc}") from None
            time.sleep(0.1)
    words = text.split()
    if not words or not words[0].isascii() or not words[0].isdigit() or int(words[0]) <= 0:
        raise ProbeError(f"process {name}: pid file {path} holds no pid "
                         f"({'it is empty' if not words else 'its first word is not a process id'})")
    return int(words[0])


def _stat(pid: int, proc: Path) -> tuple[str, int] | None:
    """(comm, ppid) of a process, or None when it is gone."""
    try:
        text = (proc / str(pid) / "stat").read_text(encoding="utf-8", errors="replace")
        # comm is in parentheses and may itself hold spaces or parentheses.
        comm = text[text.index("(") + 1:text.rindex(")")]
        rest = text[text.rindex(")") + 2:].split()
        return comm, int(rest[1])
    except (OSError, IndexError, ValueError):
        return None  # The process ended while we looked.


def children_of(pids: Iterable[int], *, proc: Path = PROC) -> list[int]:
    """Every descendant of ``pids`` (not the pids themselves), breadth first."""
    parents: dict[int, list[int]] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        stat = _stat(int(entry.name), proc)
        if stat is not None:
            parents.setdefault(stat[1], []).append(int(entry.name))
    found: list[int] = []
    queue = list(pids)
    while queue:
        for child in sorted(parents.get(queue.pop(0), [])):
            if child not in found:
                found.append(child)
                queue.append(child)
    return found


def _environ(pid: int, proc: Path) -> tuple[tuple[tuple[str, bytes], ...], str]:
    try:
        raw = (proc / str(pid) / "environ").read_bytes()
    except OSError as exc:
        return (), f"cannot read /proc/{pid}/environ: {exc.strerror}"
    pairs = []
    for item in raw.split(b"\0"):
        if not item:
            continue
        name, _, value = item.partition(b"=")
        pairs.append((name.decode("utf-8", "replace"), value))
    return tuple(pairs), ""


def _open_files(pid: int, proc: Path) -> tuple[tuple[str, ...], str]:
    fd_dir = proc / str(pid) / "fd"
    try:
        entries = list(fd_dir.iterdir())
    except OSError as exc:
        return (), f"cannot list /proc/{pid}/fd: {exc.strerror}"
    targets = []
    for entry in entries:
        try:
            targets.append(os.readlink(entry))
        except OSError:
            continue  # closed between listing and reading
    return tuple(sorted(set(targets))), ""


def observe_pid(name: str, pid: int, *, proc: Path = PROC) -> ProcessObservation | None:
    """One process, or None when it no longer exists."""
    stat = _stat(pid, proc)
    if stat is None:
        return None
    environ, environ_error = _environ(pid, proc)
    open_files, fd_error = _open_files(pid, proc)
    return ProcessObservation(name=name, pid=pid, ppid=stat[1], comm=stat[0], environ=environ,
                              environ_error=environ_error, open_files=open_files, fd_error=fd_error)


def observe_process(process: Process, *, proc: Path = PROC) -> list[ProcessObservation]:
    """The process named in the profile and (if asked) all its descendants.

    Raises:
        ProbeError: the pid file is unreadable or the process is not running.
    """
    pid = read_pid_file(process.name, process.pid_file)
    main = observe_pid(process.name, pid, proc=proc)
    if main is None:
        raise ProbeError(f"process {process.name}: pid {pid} from {process.pid_file} is not running")
    found = [main]
    if process.include_children:
        for child in children_of([pid], proc=proc):
            seen = observe_pid(f"{process.name}/child", child, proc=proc)
            if seen is not None:
                found.append(seen)
    return found


def observe_local(local: Local, *, proc: Path = PROC) -> list[ProcessObservation]:
    """Every process of the profile's ``[local]`` section, with descendants."""
    if not local.processes:
        raise ProbeError("the profile's [local] section names no processes")
    found: list[ProcessObservation] = []
    for process in local.processes:
        found.extend(observe_process(process, proc=proc))
    return found


def observe_docker(project: str | containers_probe.ContainerSelector, *, client: Any = None,
                   proc: Path = PROC, timeout_s: float = 15.0) -> list[ProcessObservation]:
    """The containers labelled ``votriz.project=PROJECT``: each container's configured
    environment (kept on disk by the engine), and its processes seen through /proc
    (the harness runs on the Docker host). Every call to the engine gives up after
    ``timeout_s``.

    Raises:
        ProbeError: the Docker engine cannot be reached or lists no such container.
    """
    own_client = client is None
    if client is None:
        client = containers_probe.docker_client(timeout_s)
    try:
        containers = project_containers(project, client)
    finally:
        if own_client:
            client.close()
    found: list[ProcessObservation] = []
    for container in containers:
        attrs = container.attrs
        pairs = []
        for item in attrs.get("Config", {}).get("Env") or ():
            name, _, value = str(item).partition("=")
            pairs.append((name, value.encode()))
        found.append(ProcessObservation(name=f"{container.name}/config", pid=0, ppid=0,
                                        comm="container config", environ=tuple(pairs)))
        pid = int(attrs.get("State", {}).get("Pid") or 0)
        main = observe_pid(container.name, pid, proc=proc) if pid else None
        if main is not None:
            found.append(main)
            for child in children_of([pid], proc=proc):
                seen = observe_pid(f"{container.name}/child", child, proc=proc)
                if seen is not None:
                    found.append(seen)
    return found
