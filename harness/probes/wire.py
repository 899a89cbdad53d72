"""The API's own outbound TCP flows, seen on the wire in its network namespace.

While the harness drives the API, a child process enters the API's network
namespace (``/proc/PID/ns/net``: the host's own for local processes, the
container's for Docker), opens a raw ``AF_PACKET`` socket there and reads every
TCP segment on every interface until it is told to stop or its deadline passes.
A flow counts when the API is its client: the client's socket is one of the
API's processes' sockets (``/proc/PID/fd`` → ``socket:[inode]`` → the
namespace's ``/proc/PID/net/tcp``), looked up while the flow is open, so other
processes of the host (the harness itself, other services) never count. For
each such flow it keeps the first client bytes (at most
:data:`MAX_FIRST_BYTES`, in sequence order from the SYN), which
:mod:`harness.probes.flow_start` classifies, and when the client sent payload;
never the bytes themselves.

Root (``CAP_NET_RAW`` and ``CAP_SYS_ADMIN`` for another namespace) is needed;
without it the capture is a :class:`~harness.outcomes.ProbeError` naming why.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import select
import socket
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from harness.child_calls import child_outcome, running_child
from harness.outcomes import ProbeError
from harness.platform.base import OutOfReach
from harness.policy import Policy
from harness.probes.docker_engine import docker_client, project_containers
from harness.probes.flow_start import FlowStart, classify_flow_start, parse_request_line
from harness.probes.processes import observe_process
from harness.profile import TargetProfile

PROC = Path("/proc")
ETH_P_ALL, ETH_P_IP, ETH_P_IPV6 = 0x0003, 0x0800, 0x86DD
PACKET_OUTGOING = 4
ARPHRD_LOOPBACK = 772
SOL_PACKET, PACKET_STATISTICS = 263, 6
SO_RCVBUFFORCE, SO_TIMESTAMPNS = 33, 35
CLONE_NEWNET = 0x40000000
TCP_FIN, TCP_SYN, TCP_ACK = 0x01, 0x02, 0x10
#: Client bytes kept per flow: enough for any ClientHello's server name or a request line.
MAX_FIRST_BYTES = 16384
#: Flows followed at once; beyond, new flows are counted, not followed.
MAX_FLOWS = 2048
#: How long the capture waits for packets before looking at its control pipe again.
POLL_S = 0.005
#: Packets read from the socket at one go.
READ_BATCH = 512
#: At most this long to read what the socket still holds once told to stop.
DRAIN_S = 2.0
RECEIVE_BUFFER = 16 << 20
TCP_LISTEN = "0A"

_CHILDREN = multiprocessing.get_context("forkserver")


@dataclass(frozen=True)
class ApiProcesses:
    """The processes whose outbound flows are judged, and the namespace they share.

    Attributes:
        where: how they were found (``[local] process api``, ``container votriz-x-api-1``).
        root_pids: the processes named (gunicorn's master, a container's first process);
            their descendants, present and future, count too.
        namespace: ``/proc/PID/ns/net`` of the first root.
    """

    where: str
    root_pids: tuple[int, ...]
    namespace: Path


@dataclass(frozen=True)
class WireFlow:
    """One TCP flow the API opened (or kept) during the capture, as its client.

    Attributes:
        client: the API's end, ``address:port``.
        server: the peer, ``address:port``.
        began_in_capture: whether its SYN was seen (so ``start`` is its very beginning).
        start: what its first client bytes are.
        first_payload_at: ``time.monotonic()`` of its first client payload; None if none.
        last_payload_at: of its last client payload.
        client_bytes: client payload bytes seen.
        requests: plaintext HTTP request lines seen at the start of later client segments of a
            flow begun before the capture (method and path only).
        bursts: (from, to) of each run of client payload (pauses under :data:`BURST_GAP_S`; the
            last of :data:`MAX_BURSTS` takes the rest): when a kept-alive flow sent.
    """

    client: str
    server: str
    began_in_capture: bool
    start: FlowStart
    first_payload_at: float | None
    last_payload_at: float | None
    client_bytes: int
    requests: tuple[str, ...] = ()
    bursts: tuple[tuple[float, float], ...] = ()

    def active_between(self, start: float, end: float) -> bool:
        """Whether the client sent payload between ``start`` and ``end`` (monotonic)."""
        if self.bursts:
            return any(first <= end and last >= start for first, last in self.bursts)
        return (self.first_payload_at is not None and self.last_payload_at is not None
                and self.first_payload_at <= end and self.last_payload_at >= start)


@dataclass(frozen=True)
class WireCapture:
    """What the capture in the API's namespace saw.

    Attributes:
        api: the processes whose flows were followed.
        started_at: ``time.monotonic()`` when the capture was reading.
        stopped_at: when it stopped.
        flows: the API's client flows that carried or began with anything, in order of first sight.
        packets: TCP segments read.
        dropped: packets the kernel dropped before the capture read them (its statistics),
            plus one where packets were still queued when the capture stopped (unread, lost).
        other_flows: flows whose client socket was not the API's when looked up (other
            processes' flows, the API's incoming ones, or one closed before it was looked up).
        flows_not_followed: flows beyond :data:`MAX_FLOWS`.
    """

    api: ApiProcesses
    started_at: float
    stopped_at: float
    flows: tuple[WireFlow, ...]
    packets: int
    dropped: int
    other_flows: int
    flows_not_followed: int = 0


# --- which processes are the API -----------------------------------------------------------

#: The name the profile gives the API: its ``[local]`` process, or its container's Compose
#: service (``com.docker.compose.service``) or ``votriz.role`` label.
API_NAME = "api"
_SERVICE_LABELS = ("com.docker.compose.service", "votriz.role")


def _namespace_of(pid: int) -> Path:
    path = PROC / str(pid) / "ns" / "net"
    try:
        os.stat(path)
    except OSError as exc:
        raise ProbeError(f"cannot open the network namespace of pid {pid}: {exc.strerror}") from None
    return path


def find_api_processes(profile: TargetProfile, policy: Policy) -> ApiProcesses | OutOfReach:
    """The API's processes: the ``[local]`` process named ``api``, or the ``[docker]`` project's
    container whose Compose service (or ``votriz.role``) is ``api``.

    Raises:
        ProbeError: the process or container is named but not running, or the engine cannot
            be asked.
    """
    if profile.backend == "local" and profile.local is not None:
        named = [process for process in profile.local.processes if process.name == API_NAME]
        if not named:
            return OutOfReach("the profile's [local] section names no process 'api'")
        pid = observe_process(named[0])[0].pid
        return ApiProcesses(f"[local] process api (pid {pid})", (pid,), _namespace_of(pid))
    if profile.backend == "docker" and profile.docker is not None:
        client = docker_client(policy)
        try:
            containers = project_containers(profile.docker.project, client)
        finally:
            client.close()
        for container in containers:
            labels = container.attrs.get("Config", {}).get("Labels") or {}
            if any(labels.get(label) == API_NAME for label in _SERVICE_LABELS):
                pid = int(container.attrs.get("State", {}).get("Pid") or 0)
                if pid <= 0:
                    raise ProbeError(f"the API container {container.name} is not running")
                return ApiProcesses(f"container {container.name}", (pid,), _namespace_of(pid))
        return OutOfReach("no container of the [docker] project has the Compose service "
                          "(or votriz.role) 'api'")
    return OutOfReach(f"backend {profile.backend!r}: the API's processes and network namespace "
                      "are not on this host (no [local] process or [docker] project)")


# --- packets ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Segment:
    """One TCP segment: its endpoints as ``address:port``, flags, sequence number, payload."""

    source: str
    destination: str
    flags: int
    seq: int
    payload: bytes


def _endpoint(address: bytes, port: int) -> str:
    if len(address) == 4:
        return f"{socket.inet_ntop(socket.AF_INET, address)}:{port}"
    return f"[{socket.inet_ntop(socket.AF_INET6, address)}]:{port}"


def parse_segment(packet: bytes, ethertype: int) -> Segment | None:
    """The TCP segment in an IPv4 or IPv6 packet (no link-layer header), else None (never raises)."""
    if ethertype == ETH_P_IP and len(packet) >= 20 and packet[0] >> 4 == 4 and packet[9] == 6:
        header = (packet[0] & 0x0F) * 4
        total = int.from_bytes(packet[2:4], "big")
        source, destination = packet[12:16], packet[16:20]
        tcp = packet[header:total if header < total <= len(packet) else len(packet)]
    elif ethertype == ETH_P_IPV6 and len(packet) >= 40 and packet[0] >> 4 == 6 and packet[6] == 6:
        length = int.from_bytes(packet[4:6], "big")
        source, destination = packet[8:24], packet[24:40]
        tcp = packet[40:40 + length]
    else:
        return None
    if len(tcp) < 20:
        return None
    offset = (tcp[12] >> 4) * 4
    if offset < 20 or offset > len(tcp):
        return None
    sport, dport, seq = struct.unpack("!HHI", tcp[:8])
    return Segment(_endpoint(source, sport), _endpoint(destination, dport), tcp[13], seq,
                   bytes(tcp[offset:]))


# --- whose sockets ------------------------------------------------------------------------

def _proc_address(text: str) -> str:
    """``0100007F:1F90`` (``/proc/net/tcp``) or its IPv6 form as ``address:port``."""
    hex_address, _, hex_port = text.partition(":")
    raw = bytes.fromhex(hex_address)
    # The kernel prints each 32-bit word in host (little-endian) order.
    raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return _endpoint(raw, int(hex_port, 16))


@dataclass
class SocketTable:
    """The API's TCP sockets as last read: client ends (local, remote) and listening ports."""

    roots: tuple[int, ...]
    connected: set[tuple[str, str]] = field(default_factory=set)
    listening_ports: set[str] = field(default_factory=set)
    read_at: float = 0.0

    def pids(self) -> list[int]:
        """The roots and their descendants now, through each thread's ``children`` list (a
        millisecond, where listing every process of a busy host takes tens)."""
        found: list[int] = []
        queue = list(self.roots)
        while queue and len(found) < 4096:
            pid = queue.pop(0)
            if pid in found:
                continue
            try:
                tasks = list(os.scandir(PROC / str(pid) / "task"))
            except OSError:
                continue
            found.append(pid)
            for task in tasks:
                try:
                    queue += [int(child) for child in
                              Path(task.path, "children").read_text(encoding="ascii").split()]
                except (OSError, ValueError):
                    continue
        return found

    def refresh(self) -> None:
        """Read the API's socket inodes and its namespace's TCP tables again."""
        inodes: set[str] = set()
        pids = self.pids()
        for pid in pids:
            try:
                for entry in os.scandir(PROC / str(pid) / "fd"):
                    try:
                        target = os.readlink(entry.path)
                    except OSError:
                        continue
                    if target.startswith("socket:["):
                        inodes.add(target[8:-1])
            except OSError:
                continue
        connected, listening = set(), set()
        for pid in pids[:1]:
            for table in ("tcp", "tcp6"):
                try:
                    lines = (PROC / str(pid) / "net" / table).read_text(encoding="ascii").splitlines()[1:]
                except OSError:
                    continue
                for line in lines:
                    fields = line.split()
                    if len(fields) < 10 or fields[9] not in inodes:
                        continue
                    local, remote = _proc_address(fields[1]), _proc_address(fields[2])
                    if fields[3] == TCP_LISTEN:
                        listening.add(local.rsplit(":", 1)[1])
                    else:
                        connected.add((local, remote))
        self.connected, self.listening_ports, self.read_at = connected, listening, time.monotonic()

    def api_is_client(self, source: str, destination: str) -> bool | None:
        """True when (source → destination) is sent by the API as a client, False when it is sent
        to the API as a client, None when neither end is an API client socket."""
        listening = self.listening_ports
        if (source, destination) in self.connected and source.rsplit(":", 1)[1] not in listening:
            return True
        if (destination, source) in self.connected and destination.rsplit(":", 1)[1] not in listening:
            return False
        return None


# --- flows --------------------------------------------------------------------------------

#: Client payload this close after the last is in the same burst; bursts kept per flow.
BURST_GAP_S, MAX_BURSTS = 0.05, 256


@dataclass
class _Flow:
    client: str
    server: str
    isn: int | None = None
    first_bytes: bytearray = field(default_factory=bytearray)
    pending: dict[int, bytes] = field(default_factory=dict)
    first_at: float | None = None
    last_at: float | None = None
    client_bytes: int = 0
    requests: list[str] = field(default_factory=list)
    mid_flow_start: bytes = b""
    bursts: list[list[float]] = field(default_factory=list)

    def add(self, segment: Segment, now: float) -> None:
        if segment.flags & TCP_SYN and not segment.flags & TCP_ACK:
            self.isn = segment.seq
            return
        if not segment.payload:
            return
        self.client_bytes += len(segment.payload)
        self.first_at = now if self.first_at is None else self.first_at
        self.last_at = now
        if self.bursts and (now - self.bursts[-1][1] <= BURST_GAP_S or len(self.bursts) >= MAX_BURSTS):
            self.bursts[-1][1] = max(self.bursts[-1][1], now)
        else:
            self.bursts.append([now, now])
        if self.isn is None:
            self._mid_flow(segment.payload)
            return
        offset = (segment.seq - self.isn - 1) % (1 << 32)
        if offset < MAX_FIRST_BYTES:
            self.pending[offset] = segment.payload
            while len(self.first_bytes) in self.pending and len(self.first_bytes) < MAX_FIRST_BYTES:
                self.first_bytes += self.pending.pop(len(self.first_bytes))
            del self.first_bytes[MAX_FIRST_BYTES:]
            # Keep only segments that can still join the contiguous beginning.
            if len(self.pending) > 64:
                self.pending.clear()

    def _mid_flow(self, payload: bytes) -> None:
        if not self.mid_flow_start:
            self.mid_flow_start = payload[:MAX_FIRST_BYTES]
        request = parse_request_line(payload)
        if request is not None and len(self.requests) < 16:
            self.requests.append(request.text)

    def observed(self) -> WireFlow:
        began = self.isn is not None
        data = bytes(self.first_bytes) if began else self.mid_flow_start
        return WireFlow(self.client, self.server, began, classify_flow_start(data, began_in_capture=began),
                        self.first_at, self.last_at, self.client_bytes, tuple(self.requests),
                        tuple((first, last) for first, last in self.bursts))


class FlowBook:
    """Segments sorted into flows; the API's client flows kept, others dropped once known."""

    def __init__(self, table: SocketTable) -> None:
        self.table = table
        self.flows: dict[tuple[str, str], _Flow] = {}
        self.waiting: dict[tuple[str, str], list[tuple[Segment, float]]] = {}
        self.not_api: set[tuple[str, str]] = set()
        self.other_flows = 0
        self.not_followed = 0

    def add(self, segment: Segment, now: float) -> None:
        key = (segment.source, segment.destination)
        reverse = (segment.destination, segment.source)
        if key in self.flows:
            self.flows[key].add(segment, now)
            return
        if reverse in self.flows or key in self.not_api or reverse in self.not_api:
            return
        pair = key if key in self.waiting else reverse if reverse in self.waiting else None
        if pair is None:
            if len(self.waiting) + len(self.flows) >= MAX_FLOWS:
                self.not_followed += 1
                self.not_api.add(key)
                return
            pair = key
            self.waiting[pair] = []
        if len(self.waiting[pair]) < 256:
            self.waiting[pair].append((segment, now))

    def attribute(self) -> None:
        """Decide the waiting flows with the API's sockets read now.

        A client's socket is in its namespace's table from ``connect()`` on, before its SYN
        leaves, so one reading after a flow's first packet decides it: a flow not found then
        is not the API's as a client (or closed before it could be looked up: counted).
        """
        if not self.waiting:
            return
        self.table.refresh()
        for pair, segments in list(self.waiting.items()):
            del self.waiting[pair]
            is_client = self.table.api_is_client(*pair)
            if is_client is None:
                self.not_api.add(pair)
                self.other_flows += 1
                continue
            client_to_server = pair if is_client else (pair[1], pair[0])
            flow = self.flows[client_to_server] = _Flow(*client_to_server)
            for segment, at in segments:
                if (segment.source, segment.destination) == client_to_server:
                    flow.add(segment, at)

    def observed(self) -> tuple[WireFlow, ...]:
        return tuple(flow.observed() for flow in self.flows.values())


# --- the capture child --------------------------------------------------------------------

def _enter_namespace(namespace: Path) -> None:
    if os.stat(namespace).st_ino == os.stat("/proc/self/ns/net").st_ino:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    descriptor = os.open(namespace, os.O_RDONLY)
    try:
        if libc.setns(descriptor, CLONE_NEWNET) != 0:
            raise ProbeError(f"cannot enter the API's network namespace {namespace}: "
                             f"{os.strerror(ctypes.get_errno())}")
    finally:
        os.close(descriptor)


def _open_raw_socket() -> socket.socket:
    try:
        raw = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
    except PermissionError:
        raise ProbeError("a raw packet socket needs CAP_NET_RAW (run the audit as root)") from None
    try:
        raw.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER)
    except OSError:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
    return raw


def capture_flows(api: ApiProcesses, seconds: float, control: Connection) -> WireCapture:
    """Read the API's namespace's TCP segments until ``control`` says stop or ``seconds`` pass.

    Runs in the capture's child: it sends ``"reading"`` on ``control`` once the socket is open,
    then stops at the first message from the parent.
    """
    _enter_namespace(api.namespace)
    raw = _open_raw_socket()
    # The kernel stamps each packet as it arrives (wall clock); the steps are timed with the
    # monotonic clock, and this process may read a packet a while after it arrived.
    raw.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    wall_minus_monotonic = time.time() - time.monotonic()
    book = FlowBook(SocketTable(api.root_pids))
    packets = 0
    started = time.monotonic()
    deadline = started + seconds
    unread = 0
    control.send("reading")
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([raw.fileno(), control.fileno()], [], [], POLL_S)
            if control.fileno() in ready:
                # What the kernel already holds was sent before the stop: read it all (a
                # busy machine may have left this process behind), within DRAIN_S.
                drain_until = time.monotonic() + DRAIN_S
                while True:
                    read, segments = _read_queued(raw, book, wall_minus_monotonic)
                    packets += segments
                    if read < READ_BATCH or time.monotonic() >= drain_until:
                        break
                # Still a full batch when the time was up: packets were left unread, lost.
                unread = int(read == READ_BATCH)
                break
            if raw.fileno() in ready:
                packets += _read_queued(raw, book, wall_minus_monotonic)[1]
            book.attribute()
        stopped = time.monotonic()
        book.attribute()
        dropped = struct.unpack("II", raw.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))[1] + unread
    finally:
        raw.close()
    return WireCapture(api, started, stopped, book.observed(), packets, dropped, book.other_flows,
                       book.not_followed)


def _read_queued(raw: socket.socket, book: FlowBook, wall_minus_monotonic: float) -> tuple[int, int]:
    """Up to :data:`READ_BATCH` packets the socket holds, their segments added to ``book``: how
    many packets were read (fewer than the batch: none is left) and how many were segments."""
    read = segments = 0
    while read < READ_BATCH:
        try:
            data, ancillary, _, address = raw.recvmsg(65535, socket.CMSG_SPACE(16),
                                                       socket.MSG_DONTWAIT)
        except BlockingIOError:
            break
        read += 1
        # Loopback hands every packet to the socket twice: going out, then coming in.
        if address[2] == PACKET_OUTGOING and address[3] == ARPHRD_LOOPBACK:
            continue
        segment = parse_segment(data, address[1])
        if segment is not None:
            segments += 1
            book.add(segment, _arrival(ancillary, wall_minus_monotonic))
    return read, segments


def _arrival(ancillary: list[tuple[int, int, bytes]], wall_minus_monotonic: float) -> float:
    """When the kernel received the packet, on the monotonic clock (now, if it gave no stamp)."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            seconds, nanoseconds = struct.unpack("qq", data[:16])
            return float(seconds + nanoseconds / 1e9 - wall_minus_monotonic)
    return time.monotonic()


def _child_side(api: ApiProcesses, seconds: float, control: Connection) -> None:
    outcome = child_outcome(capture_flows, (api, seconds, control))
    with suppress(OSError):
        control.send(outcome)


class WireWatch:
    """A capture running in its child; :attr:`capture` is set when the ``with`` block ends.

    Attributes:
        capture: what it saw (None until the block ended).
    """

    capture: WireCapture | None = None


@contextmanager
def watching_the_wire(api: ApiProcesses, seconds: float) -> Iterator[WireWatch]:
    """Capture the API's outbound flows for the duration of the block (at most ``seconds``).

    Raises:
        ProbeError: the capture could not start (no privilege, no namespace), failed, or did
            not answer within ``seconds`` plus a margin.
    """
    ours, theirs = _CHILDREN.Pipe(duplex=True)
    watch = WireWatch()
    try:
        with running_child(_CHILDREN, _child_side, (api, seconds, theirs), name="votriz-audit-wire",
                           cannot_start="the wire capture cannot start its process"):
            theirs.close()
            if not ours.poll(min(seconds, 30.0)):
                raise ProbeError("the wire capture did not start reading within "
                                 f"{min(seconds, 30.0):g} s")
            first = _receive(ours)
            if first != "reading":
                raise ProbeError(f"the wire capture could not start: {first[1]}")
            yield watch
            with suppress(OSError):
                ours.send("stop")
            if not ours.poll(seconds + 10.0):
                raise ProbeError(f"the wire capture did not answer within {seconds + 10.0:g} s")
            status, payload = _receive(ours)
            if status != "ok":
                raise ProbeError(f"the wire capture failed: {payload}")
            watch.capture = payload
    finally:
        ours.close()


def _receive(connection: Connection) -> Any:
    try:
        return connection.recv()
    except EOFError:
        raise ProbeError("the wire capture's process ended without an answer") from None
