"""What runs on this host as local processes, for ``votriz-audit init --local``.

The service's parts are found in ``/proc`` by what their main process runs
(nginx, postgres, redis-server, a p11-kit server, gunicorn), outside
containers (a container's processes see other files). A pid file is taken
only when its first line is that process's pid. Several deployments can run
on one host: the edge is the one whose TLS port is asked for (or the only
one), and of each other part the instance whose files share the longest path
with the edge's is taken; the others are named in the notes.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.probes.discovery import (
    Discovery,
    DiscoveryError,
    FoundEdge,
    FoundListener,
    connect_address,
    fd_target,
    find_edge,
    unix_listeners,
)
from harness.probes.listeners import process_tree, scan_process_trees
from harness.safe_files import FileRefused, read_bytes

#: Command names of the service's parts, as ``/proc/PID/comm`` shows their main process.
LOCAL_PARTS = {"nginx": "edge", "postgres": "postgres", "redis-server": "redis", "p11-kit-server": "hsm",
               "p11-kit": "hsm", "gunicorn": "api"}
_CONF_CAP = 1 << 20


@dataclass(frozen=True)
class LocalRoot:
    """The main process of one part of the service.

    Attributes:
        part: ``edge``, ``postgres``, ``redis``, ``hsm`` or ``api``.
        pid: its pid.
        argv: its command line (a rewritten process title split into words).
    """

    part: str
    pid: int
    argv: tuple[str, ...]


def _proc_facts(pid: int, proc: Path) -> tuple[str, int, tuple[str, ...]] | None:
    """(command name, parent pid, argv) of ``pid``, or None if it cannot be read."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
        raw = (proc / str(pid) / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    command = stat[stat.index("(") + 1:stat.rindex(")")]
    parent = int(stat[stat.rindex(")") + 2:].split()[1])
    argv = [a.decode("utf-8", "replace") for a in raw if a]
    # nginx and redis rewrite their process title into one string ("nginx: master process ...").
    return command, parent, tuple(argv[0].split() if len(argv) == 1 else argv)


def _part_of(command: str, argv: Sequence[str]) -> str | None:
    # gunicorn's master runs under its own name, as ``python3 .../gunicorn`` or ``python -m gunicorn``.
    return LOCAL_PARTS.get(command) or ("api" if any(Path(a).name == "gunicorn" for a in argv[:3]) else None)


def _same_mount_namespace(pid: int, proc: Path) -> bool:
    """Whether ``pid`` sees this host's files as we do (a container's processes do not)."""
    try:
        return os.readlink(proc / str(pid) / "ns" / "mnt") == os.readlink(proc / "self" / "ns" / "mnt")
    except OSError:
        return False


def local_roots(proc: Path = Path("/proc")) -> list[LocalRoot]:
    """The main process of every part running on this host outside containers, by pid."""
    facts = {int(e.name): found for e in proc.iterdir()
             if e.name.isdigit() and (found := _proc_facts(int(e.name), proc)) is not None}
    roots = []
    for pid, (command, parent, argv) in sorted(facts.items()):
        part = _part_of(command, argv)
        above = facts.get(parent)
        if part is not None and (above is None or _part_of(above[0], above[2]) != part) \
                and _same_mount_namespace(pid, proc):
            roots.append(LocalRoot(part, pid, argv))
    return roots


def _option(argv: Sequence[str], *names: str) -> str | None:
    """The value of the first of ``names`` in ``argv`` (``--pid X`` or ``--pid=X``)."""
    for index, arg in enumerate(argv):
        for name in names:
            if arg == name and index + 1 < len(argv):
                return argv[index + 1]
            if arg.startswith(name + "=") and name.startswith("--"):
                return arg[len(name) + 1:]
    return None


def nginx_directives(argv: Sequence[str], *names: str) -> list[Path]:
    """The paths the nginx configuration named by ``argv`` (``-p PREFIX -c CONF``) gives for the
    ``names`` directives (``pid``, ``ssl_certificate``), relative ones under the prefix."""
    prefix = Path(_option(argv, "-p") or "/etc/nginx")
    try:
        text = read_bytes(prefix / (_option(argv, "-c") or "nginx.conf"), "nginx configuration",
                          _CONF_CAP).decode("utf-8", "replace")
    except FileRefused:
        return []
    return [prefix / words[1].rstrip(";") for line in text.splitlines()
            if len(words := line.split()) > 1 and words[0] in names]


def pid_file_candidates(root: LocalRoot) -> list[Path]:
    """Where ``root``'s command line (or, for nginx, its configuration) says its pid file is."""
    if root.part == "edge":
        return nginx_directives(root.argv, "pid") or [Path("/run/nginx.pid")]
    named = {"api": _option(root.argv, "--pid", "-p"), "postgres": _option(root.argv, "-D")}.get(root.part)
    if named is None:
        return []
    return [Path(named) / "postmaster.pid" if root.part == "postgres" else Path(named)]


def verified_pid_file(pid: int, candidates: Sequence[Path]) -> Path | None:
    """The first candidate whose first line is ``pid``."""
    for path in candidates:
        try:
            first = read_bytes(path, "pid file", 4096).decode("ascii", "replace").split("\n", 1)[0]
        except FileRefused:
            continue
        if first.strip() == str(pid):
            return path
    return None


def _home(root: LocalRoot, pid_file: Path | None) -> str:
    """The path that places a part in a deployment: its pid file, else its first absolute argument."""
    return str(pid_file) if pid_file else next((a for a in root.argv[1:] if a.startswith("/")), "/")


def _shared(a: str, b: str) -> int:
    """How many leading path components ``a`` and ``b`` share."""
    return len(os.path.commonpath([a, b]).split("/")) if a.startswith("/") and b.startswith("/") else 0


def discover_local(*, edge_port: int | None = None, timeout_s: float = 5.0,
                   proc: Path = Path("/proc")) -> Discovery:
    """The service's parts running as processes on this host (not in containers).

    Args:
        edge_port: the edge's TLS port, to choose among several deployments.

    Raises:
        DiscoveryError: none runs here, no edge listens on ``edge_port``, or several TLS edges
            run and none was chosen.
    """
    roots = local_roots(proc)
    if not roots:
        raise DiscoveryError("no nginx, postgres, redis-server, p11-kit server or gunicorn runs on this "
                             "host outside containers (for a Compose deployment: --docker-project NAME)")
    pid_files = {root.pid: verified_pid_file(root.pid, pid_file_candidates(root)) for root in roots}
    # A part whose command line names no pid file often keeps it beside the others' (a run dir).
    beside = {path.parent for path in pid_files.values() if path is not None}
    for root in roots:
        if pid_files[root.pid] is None:
            pid_files[root.pid] = verified_pid_file(
                root.pid, [f for d in sorted(beside) for f in sorted(d.glob("*.pid"))])
    edges: list[tuple[LocalRoot, FoundEdge]] = []
    for root in (r for r in roots if r.part == "edge"):
        ports = [(f"edge (pid {root.pid})", connect_address(s.address), s.port)
                 for s in scan_process_trees([("edge", root.pid, True)], proc).sockets]
        if edge_port is not None and edge_port not in {port for _, _, port in ports}:
            continue
        anchors = [p.parent for p in nginx_directives(root.argv, "ssl_certificate")]
        edge = find_edge(ports, anchors, timeout_s, prefer=edge_port or 443)
        if edge is not None and edge.https_port == (edge_port or edge.https_port):
            edges.append((root, edge))
    if edge_port is not None and not edges:
        raise DiscoveryError(f"no nginx on this host completes a TLS handshake on port {edge_port}")
    if len(edges) > 1:
        raise DiscoveryError("several TLS edges run on this host ("
                             + ", ".join(f"{e.address}:{e.https_port}" for _, e in edges)
                             + "): choose one with --edge-port PORT")
    notes: list[str] = []
    chosen = roots
    if edges:
        edge_home = _home(edges[0][0], pid_files[edges[0][0].pid])

        def closeness(root: LocalRoot) -> int:
            return _shared(_home(root, pid_files[root.pid]), edge_home)

        best: dict[str, LocalRoot] = {"edge": edges[0][0]}
        for root in roots:
            if root.part == "edge":
                continue
            if root.part not in best or closeness(root) > closeness(best[root.part]):
                best[root.part] = root
        chosen = [r for r in roots if best.get(r.part) is r]
        notes += [f"{r.part} (pid {r.pid}) left out: another deployment's, by its files' paths"
                  for r in roots if r not in chosen]
    return _survey(chosen, pid_files, edges[0][1] if edges else None, notes, proc)


def _survey(roots: Sequence[LocalRoot], pid_files: dict[int, Path | None], edge: FoundEdge | None,
            notes: list[str], proc: Path) -> Discovery:
    processes: list[tuple[str, int, Path | None]] = []
    postgres, p11, redis = [], [], []
    logs: dict[Path, None] = {}
    for root in roots:
        same = sum(1 for p in processes if p[0].split("-")[0] == root.part)
        name = f"{root.part}-{same + 1}" if same else root.part
        processes.append((name, root.pid, pid_files[root.pid]))
        for path, command in unix_listeners(root.pid, proc):
            listener = FoundListener(path, None, command, name)
            if root.part == "postgres" and Path(path).name.startswith(".s.PGSQL."):
                postgres.append(listener)
            elif root.part == "hsm":
                p11.append(listener)
        scan = scan_process_trees([(name, root.pid, True)], proc)
        notes.extend(f"{name}: {line}" for line in scan.unreadable)
        redis += [FoundListener(connect_address(s.address), s.port, s.command, name)
                  for s in scan.sockets if root.part == "redis" and s.family == "tcp"]
        for child in process_tree(root.pid, proc):
            with contextlib.suppress(OSError):  # a process that ended, or an fd closed meanwhile
                logs.update({Path(t).parent: None for fd in (proc / str(child) / "fd").iterdir()
                             if (t := fd_target(fd)).endswith(".log")})
    return Discovery(backend="local", project=None, processes=tuple(processes), edge=edge,
                     postgres_sockets=tuple(postgres), p11_sockets=tuple(p11), redis=tuple(redis),
                     log_dirs=tuple(logs), notes=tuple(notes))
