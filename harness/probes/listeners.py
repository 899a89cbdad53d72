"""Which TCP ports a local service's processes listen on, read from /proc.

The processes are found through the profile's pid files (``local.processes``),
their descendants included (gunicorn workers, nginx workers, PostgreSQL
backends). A socket belongs to a process when ``/proc/PID/fd`` holds a link
``socket:[INODE]`` and that inode is a listening socket in
``/proc/PID/net/tcp`` or ``tcp6`` (the process's own network namespace).
"""

from __future__ import annotations

import enum
import ipaddress
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from harness.outcomes import ProbeError
from harness.policy import Policy
from harness.probes.docker_engine import docker_client, project_containers
from harness.probes.http import PlainHttpAnswer, probe_plain_http
from harness.probes.processes import children_of, read_pid_file
from harness.profile import Process, TargetProfile

# TCP state code of a listening socket in /proc/net/tcp (include/net/tcp_states.h).
TCP_LISTEN = "0A"


@dataclass(frozen=True)
class ListeningSocket:
    """One listening TCP socket held by one of the service's processes.

    Attributes:
        process: the profile's name of the process tree it belongs to (``api`` ...).
        pid: the pid holding it (the lowest, when several share it).
        command: that process's command name (``/proc/PID/comm``).
        address: the bound address (``0.0.0.0`` / ``::`` for any).
        port: the bound port.
        family: ``tcp`` (IPv4) or ``tcp6``.
        inode: the socket's inode, which identifies it across processes.
    """

    process: str
    pid: int
    command: str
    address: str
    port: int
    family: str
    inode: int


def parse_proc_net_tcp(text: str) -> dict[int, tuple[str, int]]:
    """Listening sockets in a /proc/net/tcp{,6} table: inode -> (address, port)."""
    found: dict[int, tuple[str, int]] = {}
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] != TCP_LISTEN:
            continue
        address_hex, port_hex = fields[1].split(":")
        # The kernel prints each 32-bit word in host (little-endian) byte order.
        raw = bytes.fromhex(address_hex)
        words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
        address = str(ipaddress.ip_address(words))
        found[int(fields[9])] = (address, int(port_hex, 16))
    return found


def process_tree(root_pid: int, proc: Path = Path("/proc")) -> list[int]:
    """``root_pid`` and all its descendants that are alive now."""
    return sorted([root_pid, *children_of([root_pid], proc=proc)])


@dataclass(frozen=True)
class ListenerScan:
    """The listening sockets found, and what could not be read on the way.

    Attributes:
        sockets: every listening TCP socket found.
        unreadable: ``/proc`` entries of live processes that could not be read,
            with the reason; a socket there may have been missed.
        ended: pids that ended while they were looked at (they hold no socket).
    """

    sockets: tuple[ListeningSocket, ...]
    unreadable: tuple[str, ...] = ()
    ended: tuple[int, ...] = ()


def _socket_inodes(pid: int, proc: Path, scan: _Scan) -> set[int]:
    inodes = set()
    try:
        fds = list((proc / str(pid) / "fd").iterdir())
    except FileNotFoundError:
        if (proc / str(pid)).is_dir():
            scan.unreadable.append(f"/proc/{pid}/fd: not found")
        else:
            scan.ended.append(pid)
        return set()
    except PermissionError:
        raise ProbeError(f"cannot read /proc/{pid}/fd: the harness needs the service's user "
                         "or root to see its sockets") from None
    except OSError as exc:
        scan.unreadable.append(f"/proc/{pid}/fd: {exc.strerror or type(exc).__name__}")
        return set()
    for fd in fds:
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


@dataclass
class _Scan:
    unreadable: list[str] = field(default_factory=list)
    ended: list[int] = field(default_factory=list)


def listening_sockets(processes: Sequence[Process], proc: Path = Path("/proc")
                      ) -> tuple[ListeningSocket, ...]:
    """Every listening TCP socket held by the given processes (and their children).

    Raises:
        ProbeError: a pid file cannot be read, its process is not running, or its
            file descriptors cannot be inspected.
    """
    return scan_listeners(processes, proc).sockets


def scan_listeners(processes: Sequence[Process], proc: Path = Path("/proc")) -> ListenerScan:
    """Like :func:`listening_sockets`, and says which ``/proc`` entries could not be read.

    Raises:
        ProbeError: as :func:`listening_sockets`.
    """
    roots = []
    for process in processes:
        root = read_pid_file(process.name, process.pid_file)
        if not (proc / str(root)).is_dir():
            raise ProbeError(f"process {process.name}: pid {root} from {process.pid_file} "
                             "is not running")
        roots.append((process.name, root, process.include_children))
    return scan_process_trees(roots, proc)


def scan_process_trees(roots: Iterable[tuple[str, int, bool]], proc: Path = Path("/proc")) -> ListenerScan:
    """The listening sockets of each ``(name, root pid, include children)`` tree.

    A socket is attributed to the first tree (and lowest pid) found holding it.
    """
    scan = _Scan()
    found: dict[int, ListeningSocket] = {}
    for name, root, include_children in roots:
        pids: Iterable[int] = process_tree(root, proc) if include_children else [root]
        for pid in pids:
            inodes = _socket_inodes(pid, proc, scan)
            if not inodes:
                continue
            try:
                command = (proc / str(pid) / "comm").read_text().strip()
            except OSError:
                command = "?"
            for family in ("tcp", "tcp6"):
                try:
                    table = (proc / str(pid) / "net" / family).read_text()
                except OSError as exc:
                    if not (proc / str(pid)).is_dir():
                        scan.ended.append(pid)
                    elif not (family == "tcp6" and isinstance(exc, FileNotFoundError)):
                        # (No tcp6 table at all means the kernel has no IPv6.)
                        scan.unreadable.append(f"/proc/{pid}/net/{family}: "
                                               f"{exc.strerror or type(exc).__name__}")
                    continue
                for inode, (address, port) in parse_proc_net_tcp(table).items():
                    if inode in inodes and inode not in found:
                        found[inode] = ListeningSocket(name, pid, command, address, port,
                                                       family, inode)
    return ListenerScan(tuple(sorted(found.values(), key=lambda s: (s.port, s.family, s.address))),
                        tuple(scan.unreadable), tuple(sorted(set(scan.ended))))


class SkipReason(enum.StrEnum):
    """Why a listener was not probed.

    Attributes:
        JUDGED_ELSEWHERE: another check judges it (the edge's plaintext port).
        HARNESS_FAKE: it is the harness's own fake, not the service.
        NOT_LOOPBACK: bound to an address the harness does not target; unverified.
        CONTAINER_LOCAL: bound to loopback inside a container: nothing outside it can connect.
    """

    JUDGED_ELSEWHERE = "judged elsewhere"
    HARNESS_FAKE = "harness fake"
    NOT_LOOPBACK = "not loopback"
    CONTAINER_LOCAL = "container local"


@dataclass(frozen=True)
class ProbedListener:
    """One of the service's listeners and what it said to plain HTTP.

    Attributes:
        socket: the listening socket.
        answer: its answer to one plain-text GET; None when not probed.
        skipped: why it was not probed, in words; None when probed.
        reason: why it was not probed, typed (None when probed, or unknown).
    """

    socket: ListeningSocket
    answer: PlainHttpAnswer | None
    skipped: str | None = None
    reason: SkipReason | None = None


@dataclass(frozen=True)
class OriginSurvey:
    """Every TCP listener of the service's processes, each tried with plain HTTP.

    Attributes:
        processes: the profile's process names that were inspected.
        listeners: one entry per listening socket.
        unreadable: ``/proc`` entries that could not be read (a listener may be missing).
    """

    processes: tuple[str, ...]
    listeners: tuple[ProbedListener, ...]
    unreadable: tuple[str, ...] = ()


def is_loopback(address: str) -> bool:
    """Whether ``address`` is a loopback address, an IPv4-mapped one (``::ffff:127.0.0.1``, as a
    dual-stack socket bound to 127.0.0.1 shows) included."""
    ip = ipaddress.ip_address(address)
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


def loopback_target(address: str) -> str | None:
    """The loopback address to reach a socket bound to ``address``; None if not loopback.

    A wildcard bind (``0.0.0.0``, ``::``) is reachable on loopback; a bind to
    another interface's address is not probed, since the harness only ever
    targets loopback addresses.
    """
    ip = ipaddress.ip_address(address)
    if ip.is_unspecified:
        return "127.0.0.1" if ip.version == 4 else "::1"
    if ip.is_loopback:
        return address
    if is_loopback(address):
        return str(ipaddress.IPv6Address(address).ipv4_mapped)
    return None


def survey_origin(profile: TargetProfile, policy: Policy) -> OriginSurvey:
    """List the local service's TCP listeners and send each one plain-text GET.

    The edge's plaintext port is not probed here (``transit.http_redirect_only``
    judges it per sampled path), nor are the ports of the harness's own fakes
    (``capture``), which stand in for third parties and are not the service.

    Raises:
        ProbeError: the profile has no local processes, or they cannot be inspected.
    """
    if profile.local is None or not profile.local.processes:
        raise ProbeError("the profile lists no local processes (local.processes)")
    skip: dict[int, tuple[str, SkipReason]] = {}
    if profile.capture is not None:
        capture_port = urlsplit(profile.capture.url).port
        if capture_port is not None:
            skip[capture_port] = ("the harness's own fakes (capture API), not the service",
                                  SkipReason.HARNESS_FAKE)
        if profile.capture.plaintext_port is not None:
            skip[profile.capture.plaintext_port] = ("the harness's own plaintext decoy, "
                                                    "not the service", SkipReason.HARNESS_FAKE)
    if profile.edge.http_port is not None:
        skip[profile.edge.http_port] = ("the edge's plaintext port, judged by "
                                        "transit.http_redirect_only", SkipReason.JUDGED_ELSEWHERE)
    probed = []
    scan = scan_listeners(profile.local.processes)
    for sock in scan.sockets:
        if sock.port in skip:
            probed.append(ProbedListener(sock, None, *skip[sock.port]))
            continue
        target = loopback_target(sock.address)
        if target is None:
            probed.append(ProbedListener(sock, None, f"bound to {sock.address}, not a loopback "
                                                     "address; the harness only targets loopback",
                                         SkipReason.NOT_LOOPBACK))
            continue
        answer = probe_plain_http(target, sock.port, profile.edge.host, policy.timeouts.connect_s)
        probed.append(ProbedListener(sock, answer))
    return OriginSurvey(tuple(p.name for p in profile.local.processes), tuple(probed),
                        scan.unreadable)


@dataclass(frozen=True)
class ContainerRoot:
    """A running container of the service, as the Docker host sees it.

    Attributes:
        name: the container's name.
        pid: its main process's pid on the host.
        addresses: its IP addresses on its networks (where other containers reach it).
        published: container port -> host ports it is published on.
        host_network: it shares the host's network (``network_mode: host``): its sockets
            are the host's, on the host's addresses, published or not.
    """

    name: str
    pid: int
    addresses: tuple[str, ...]
    published: dict[int, tuple[int, ...]] = field(hash=False, default_factory=dict)
    host_network: bool = False

    @classmethod
    def of(cls, container: Any) -> ContainerRoot:
        """Read from a docker SDK container's ``attrs``."""
        attrs = container.attrs
        settings = attrs.get("NetworkSettings") or {}
        addresses = tuple(sorted({str(n.get("IPAddress")) for n in (settings.get("Networks") or {}).values()
                                  if n.get("IPAddress")}))
        published: dict[int, tuple[int, ...]] = {}
        for key, bindings in (settings.get("Ports") or {}).items():
            port, _, proto = str(key).partition("/")
            if proto == "tcp" and bindings:
                published[int(port)] = tuple(int(b["HostPort"]) for b in bindings if b.get("HostPort"))
        return cls(str(container.name), int((attrs.get("State") or {}).get("Pid") or 0), addresses,
                   published, (attrs.get("HostConfig") or {}).get("NetworkMode") == "host")

    def targets(self, address: str) -> tuple[str, ...]:
        """Where a socket of this container bound to ``address`` is tried: a container on the
        host's network on the host's loopback (the harness runs on the host), any other on its
        own addresses when bound to all of them."""
        ip = ipaddress.ip_address(address)
        if not ip.is_unspecified:
            return (address,)
        if self.host_network:
            return ("::1" if ip.version == 6 else "127.0.0.1",)
        return self.addresses


def _docker_roots(profile: TargetProfile, policy: Policy, client: Any) -> list[ContainerRoot]:
    if profile.docker is None:
        raise ProbeError("the profile has no [docker] section naming the project")
    own_client = client is None
    if client is None:
        client = docker_client(policy)
    try:
        return [ContainerRoot.of(c) for c in project_containers(profile.docker.project, client)]
    finally:
        if own_client:
            client.close()


def host_network_listeners(profile: TargetProfile, policy: Policy, *, client: Any = None,
                           proc: Path = Path("/proc")) -> ListenerScan:
    """The listening TCP sockets of the service's containers that share the host's network
    (``network_mode: host``): they are on the host's addresses without any port binding, so
    the engine's list of published ports does not show them.

    Raises:
        ProbeError: the profile has no ``docker`` section, or the engine cannot be asked.
    """
    roots = [root for root in _docker_roots(profile, policy, client) if root.host_network]
    return scan_process_trees([(root.name, root.pid, True) for root in roots if root.pid], proc)


def survey_docker_origin(profile: TargetProfile, policy: Policy, *, client: Any = None,
                         proc: Path = Path("/proc")) -> OriginSurvey:
    """List the TCP listeners of the service's containers and try each with plain HTTP.

    The harness runs on the Docker host: each container's processes are read in
    ``/proc`` (their network namespace's ``net/tcp``), and a listener is tried
    on the container's own addresses, where the other containers would reach
    it. Not probed: the edge's published plaintext port (judged by
    ``transit.http_redirect_only``), the harness's fakes (``capture``), and
    sockets bound to loopback inside their container.

    Raises:
        ProbeError: the profile has no ``docker`` section, or the engine cannot be asked.
    """
    roots = _docker_roots(profile, policy, client)
    assert profile.docker is not None
    fakes: set[tuple[str, int]] = set()
    if profile.capture is not None:
        parts = urlsplit(profile.capture.url)
        for port in (parts.port, profile.capture.plaintext_port):
            if parts.hostname and port is not None:
                fakes.add((parts.hostname, port))
    by_name = {root.name: root for root in roots}
    scan = scan_process_trees([(root.name, root.pid, True) for root in roots if root.pid], proc)
    probed = []
    for sock in scan.sockets:
        root = by_name[sock.process]
        edge_http = (profile.edge.http_port is not None and root.name == profile.docker.edge_container
                     and profile.edge.http_port in root.published.get(sock.port, ()))
        targets = root.targets(sock.address)
        if edge_http:
            probed.append(ProbedListener(sock, None, "the edge's published plaintext port, judged by "
                                         "transit.http_redirect_only", SkipReason.JUDGED_ELSEWHERE))
        elif any((target, sock.port) in fakes for target in targets):
            probed.append(ProbedListener(sock, None, "the harness's own fakes, not the service",
                                         SkipReason.HARNESS_FAKE))
        elif is_loopback(sock.address) and not root.host_network:
            probed.append(ProbedListener(sock, None, "bound to loopback inside its container",
                                         SkipReason.CONTAINER_LOCAL))
        elif not targets:
            probed.append(ProbedListener(sock, None, "its container has no network address",
                                         SkipReason.CONTAINER_LOCAL))
        else:
            probed.append(ProbedListener(sock, probe_plain_http(targets[0], sock.port, profile.edge.host,
                                                                policy.timeouts.connect_s)))
    return OriginSurvey(tuple(root.name for root in roots), tuple(probed), scan.unreadable)

