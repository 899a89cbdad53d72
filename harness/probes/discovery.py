"""What runs on this host, for ``votriz-audit init``: a deployment found by behaviour.

A Compose deployment is found through the engine (its containers carry
``com.docker.compose.project``); local processes through ``/proc``
(:mod:`harness.probes.local_discovery`). Every fact
is observed: a port is the edge's TLS port because a TLS handshake completed on
it, the certificate's host names are read from that handshake, a PostgreSQL
socket is a listening unix socket held by a ``postgres`` process, a p11-kit
socket one held by ``p11-kit``, Redis a TCP listener of ``redis-server``. Log,
backup and configuration paths are guessed from names. Nothing is changed; no secret is read.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding

from harness.outcomes import ProbeError
from harness.probes import containers as containers_probe
from harness.probes.containers import ContainerSelector
from harness.probes.listeners import process_tree, scan_process_trees
from harness.safe_files import FileRefused, read_bytes

_UNIX_LISTENING = 0x10000  # /proc/net/unix flag of a listening socket (__SO_ACCEPTCON)
_CERT_SUFFIXES = (".pem", ".crt", ".cer")  # files that may hold a CA certificate
_CONFIG_SUFFIXES = (".toml", ".conf", ".ini", ".yaml", ".yml", ".json", ".cnf")
_MAX_DIR_FILES = 200  # the most files looked at in one directory (certificates, configuration, logs)
_CERT_CAP = 256 << 10


class DiscoveryError(Exception):
    """Nothing can be discovered: the engine cannot be reached, or no such deployment runs."""


@dataclass(frozen=True)
class FoundListener:
    """A listening socket of the deployment, as this host reaches it.

    Attributes:
        where: a unix socket's path on this host, or the address to connect to (TCP).
        port: the TCP port; None for a unix socket.
        command: the listening process's command name (``postgres``, ``p11-kit-server``).
        owner: the container (or process) holding it.
        bind_mounted: a unix socket reached through a bind mount the operator chose (not an
            engine-managed volume).
    """

    where: str
    port: int | None
    command: str
    owner: str
    bind_mounted: bool = True


@dataclass(frozen=True)
class BindMount:
    """A host path mounted into a container.

    Attributes:
        source: the host path.
        target: the path inside the container.
        writable: mounted read-write.
    """

    source: Path
    target: str
    writable: bool


@dataclass(frozen=True)
class FoundContainer:
    """One container of the deployment.

    Attributes:
        name: its name.
        service: its Compose service (``com.docker.compose.service``), else empty.
        image: its image reference.
        published: (host address, host port, container port) of each published port.
        mounts: its bind mounts.
    """

    name: str
    service: str
    image: str
    published: tuple[tuple[str, int, str], ...]
    mounts: tuple[BindMount, ...]


@dataclass(frozen=True)
class EdgeCertificate:
    """The certificate the edge presented, and what it chains to.

    Attributes:
        names: its DNS subject alternative names (the common name if it has none).
        issuer: its issuer, RFC 4514.
        system_trusted: the system trust store verifies it for ``names[0]``.
        trust_anchor: a CA certificate file on this host that verifies it (a full
            handshake with it as the only anchor succeeded), when the system store does not.
    """

    names: tuple[str, ...]
    issuer: str
    system_trusted: bool
    trust_anchor: Path | None = None


@dataclass(frozen=True)
class FoundEdge:
    """The TLS edge: the one published (or bound) port where a TLS handshake completed.

    Attributes:
        owner: the container (or process) behind it.
        address: where this host connects to it.
        https_port: the port the handshake completed on.
        http_port: a port of the same owner that answered a plain HTTP request, or None
            (``init`` then writes ``http_port = "none"``).
        certificate: what the handshake presented, or None if it could not be read.
        http_ports_tried: the owner's other ports asked for plain HTTP, in the order asked
            (port 80 first), up to the one that answered.
    """

    owner: str
    address: str
    https_port: int
    http_port: int | None
    certificate: EdgeCertificate | None
    http_ports_tried: tuple[int, ...] = ()


@dataclass(frozen=True)
class Discovery:
    """Everything ``init`` found about one deployment.

    Attributes:
        backend: ``docker`` or ``local``.
        project: the Compose project (Docker), else None.
        containers: its containers (Docker).
        processes: (name, pid, pid file or None) of its processes (local).
        edge: the TLS edge, or None if no port completed a handshake.
        postgres_sockets: PostgreSQL's unix sockets reachable from this host.
        p11_sockets: p11-kit servers' sockets reachable from this host (bind-mounted first).
        redis: Redis's TCP listeners.
        hsm_env: ``SOFTHSM2_CONF`` of the p11-kit server's container, as a path on this host.
        log_dirs: directories the service writes logs to (named ``*log*`` or holding ``*.log``).
        config_paths: configuration files and directories mounted read-only (guessed from suffixes).
        backup_dir: a writable mount named ``*backup*``, or None.
        drill_log: a writable mounted file named ``*drill*``, or None.
        notes: what was looked at and could not be read, one line each.
    """

    backend: str
    project: str | None
    containers: tuple[FoundContainer, ...] = ()
    processes: tuple[tuple[str, int, Path | None], ...] = ()
    edge: FoundEdge | None = None
    postgres_sockets: tuple[FoundListener, ...] = ()
    p11_sockets: tuple[FoundListener, ...] = ()
    redis: tuple[FoundListener, ...] = ()
    hsm_env: tuple[tuple[str, str], ...] = ()
    log_dirs: tuple[Path, ...] = ()
    config_paths: tuple[Path, ...] = ()
    backup_dir: Path | None = None
    drill_log: Path | None = None
    notes: tuple[str, ...] = ()


# --- the edge: handshakes ----------------------------------------------------------------------

def tls_certificate(address: str, port: int, timeout_s: float) -> x509.Certificate | None:
    """The leaf certificate ``address:port`` presents in a TLS handshake (not verified), or None
    when no handshake completes there."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((address, port), timeout=timeout_s) as raw, \
                context.wrap_socket(raw) as tls:
            der = tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError, ValueError):
        return None
    return x509.load_der_x509_certificate(der) if der else None


def answers_http(address: str, port: int, timeout_s: float) -> bool:
    """Whether ``address:port`` answers a plain HTTP request with an HTTP status line."""
    try:
        with socket.create_connection((address, port), timeout=timeout_s) as conn:
            conn.sendall(b"HEAD / HTTP/1.0\r\nHost: localhost\r\n\r\n")
            return conn.recv(16).startswith(b"HTTP/")
    except OSError:
        return False


def certificate_names(cert: x509.Certificate) -> tuple[str, ...]:
    """Its DNS subject alternative names, else its common name."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = tuple(str(n) for n in san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = ()
    if names:
        return names
    return tuple(str(a.value) for a in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME))


def handshake_verifies(address: str, port: int, host: str, timeout_s: float, cadata: str | None) -> bool:
    """Whether a verifying client completes a handshake for ``host`` (``cadata``: the only anchor;
    None: the system trust store)."""
    context = ssl.create_default_context(cadata=cadata) if cadata else ssl.create_default_context()
    try:
        with socket.create_connection((address, port), timeout=timeout_s) as raw, \
                context.wrap_socket(raw, server_hostname=host):
            return True
    except (OSError, ssl.SSLError, ValueError):
        return False


def _candidate_files(places: Iterable[Path], suffixes: tuple[str, ...]) -> list[Path]:
    """Regular files with one of ``suffixes``: each file named, and the files directly in each
    directory named (at most ``_MAX_DIR_FILES`` a directory); each once, in order."""
    found: dict[Path, None] = {}
    for place in places:
        try:
            entries = sorted(place.iterdir())[:_MAX_DIR_FILES] if place.is_dir() else [place]
        except OSError:
            continue
        for entry in entries:
            if entry.suffix in suffixes and entry.is_file() and not entry.is_symlink():
                found.setdefault(entry, None)
    return list(found)


def edge_certificate(address: str, port: int, leaf: x509.Certificate, anchor_places: Iterable[Path],
                     timeout_s: float) -> EdgeCertificate:
    """What ``leaf`` is and what verifies it: the system store, else a CA certificate among
    ``anchor_places`` that issued it and with which a verifying handshake completes."""
    names = certificate_names(leaf)
    issuer = leaf.issuer.rfc4514_string()
    host = next((n for n in names if not n.startswith("*.")), names[0] if names else "")
    if host and handshake_verifies(address, port, host, timeout_s, None):
        return EdgeCertificate(names, issuer, True)
    for path in _candidate_files(anchor_places, _CERT_SUFFIXES):
        try:
            certs = x509.load_pem_x509_certificates(read_bytes(path, "CA certificate", _CERT_CAP))
        except (FileRefused, ValueError):
            continue
        for ca in certs:
            if ca.subject != leaf.issuer:
                continue
            try:
                leaf.verify_directly_issued_by(ca)
            except (ValueError, TypeError, InvalidSignature):  # not the issuer
                continue
            pem = ca.public_bytes(Encoding.PEM)
            if host and handshake_verifies(address, port, host, timeout_s, pem.decode("ascii")):
                return EdgeCertificate(names, issuer, False, path)
    return EdgeCertificate(names, issuer, False)


def find_edge(candidates: Sequence[tuple[str, str, int]], anchor_places: Iterable[Path],
              timeout_s: float, *, prefer: int = 443) -> FoundEdge | None:
    """The edge among ``(owner, address, port)`` candidates: the first port (``prefer`` first, then
    the lowest) where a TLS handshake completes; its owner's port that answers plain HTTP is its
    HTTP port."""
    ordered = sorted(candidates, key=lambda c: (c[2] != prefer, c[2]))
    for owner, address, port in ordered:
        leaf = tls_certificate(address, port, timeout_s)
        if leaf is None:
            continue
        tried: list[int] = []
        http_port = None
        for other_owner, other_address, other in sorted(candidates, key=lambda c: (c[2] != 80, c[2])):
            if other_owner == owner and other != port:
                tried.append(other)
                if answers_http(other_address, other, timeout_s):
                    http_port = other
                    break
        return FoundEdge(owner, address, port, http_port,
                         edge_certificate(address, port, leaf, anchor_places, timeout_s), tuple(tried))
    return None


def connect_address(host_ip: str) -> str:
    """Where this host connects to a port published on ``host_ip`` (any address: loopback)."""
    try:
        if ipaddress.ip_address(host_ip or "0.0.0.0").is_unspecified:
            return "127.0.0.1" if ":" not in host_ip else "::1"
    except ValueError:
        return host_ip
    return host_ip


# --- /proc: unix sockets --------------------------------------------------------------------------

def listening_unix_paths(table: str) -> dict[int, str]:
    """Listening, path-named unix sockets in a /proc/net/unix table: inode -> path."""
    found: dict[int, str] = {}
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8 or not fields[7].startswith("/"):
            continue
        try:
            if int(fields[3], 16) & _UNIX_LISTENING:
                found[int(fields[6])] = fields[7]
        except ValueError:
            continue
    return found


def fd_target(fd: Path) -> str:
    """Where a ``/proc/PID/fd`` entry points, or "" if it was closed meanwhile."""
    try:
        return os.readlink(fd)
    except OSError:
        return ""


def socket_owners(pids: Iterable[int], proc: Path) -> dict[int, str]:
    """Socket inode -> command name of the first of ``pids`` holding it (unreadable pids skipped)."""
    owners: dict[int, str] = {}
    for pid in pids:
        # A process that ends, or a descriptor closed while it is read, holds no socket to name.
        with contextlib.suppress(OSError):
            command = (proc / str(pid) / "comm").read_text().strip()
            links = [fd_target(fd) for fd in (proc / str(pid) / "fd").iterdir()]
            for inode in (int(link[8:-1]) for link in links if link.startswith("socket:[")):
                owners.setdefault(inode, command)
    return owners


def unix_listeners(root_pid: int, proc: Path = Path("/proc")) -> list[tuple[str, str]]:
    """(path as the process sees it, command) of every listening unix socket of ``root_pid``'s tree."""
    try:
        table = (proc / str(root_pid) / "net" / "unix").read_text()
    except OSError:  # the process ended, or its namespace cannot be read: no socket seen
        return []
    owners = socket_owners(process_tree(root_pid, proc), proc)
    return [(path, owners[inode]) for inode, path in sorted(listening_unix_paths(table).items())
            if inode in owners]


# --- Docker -------------------------------------------------------------------------------------

def _host_path(inside: str, mounts: Sequence[dict[str, Any]]) -> tuple[Path, bool] | None:
    """The host path of ``inside`` through the container's mounts (deepest first), and whether
    it is a bind mount; None if it is in no mount."""
    for mount in sorted(mounts, key=lambda m: -len(str(m.get("Destination") or ""))):
        destination = str(mount.get("Destination") or "").rstrip("/")
        source = mount.get("Source")
        if source and (inside == destination or inside.startswith(destination + "/")):
            return Path(source) / inside[len(destination):].lstrip("/"), mount.get("Type") == "bind"
    return None


def _compose_projects(client: Any) -> list[str]:
    try:
        listed = client.containers.list(filters={"label": [containers_probe.COMPOSE_PROJECT_LABEL]})
    except Exception:  # only to help the message; the caller already has its answer
        return []
    return sorted({str(c.labels.get(containers_probe.COMPOSE_PROJECT_LABEL)) for c in listed})


def discover_compose(project: str, *, timeout_s: float = 10.0, proc: Path = Path("/proc")) -> Discovery:
    """The Compose project ``project`` running on this host's Docker engine.

    Raises:
        DiscoveryError: the engine cannot be reached, or runs no container of the project.
    """
    try:
        selector = ContainerSelector.compose_project(project)
        client = containers_probe.docker_client(timeout_s)
    except (ValueError, ProbeError) as exc:  # a name the engine cannot take, or no engine
        raise DiscoveryError(f"--docker-project {project!r}: {exc}") from None
    try:
        try:
            listed = sorted(client.containers.list(filters=selector.engine_filters()),
                            key=lambda c: str(c.name))
        except Exception as exc:  # the SDK raises many kinds; all mean "cannot observe"
            raise DiscoveryError(str(containers_probe.engine_error(
                exc, f"listing the containers labelled {selector}", timeout_s))) from None
        if not listed:
            others = _compose_projects(client)
            raise DiscoveryError(f"no running container is labelled {selector}"
                                 + (f" (Compose projects running here: {', '.join(others)})" if others
                                    else " (no Compose project runs on this engine)"))
        return _survey_containers(project, [c.attrs for c in listed], timeout_s, proc)
    finally:
        client.close()


def _survey_containers(project: str, inspected: Sequence[dict[str, Any]], timeout_s: float,
                       proc: Path) -> Discovery:
    found: list[FoundContainer] = []
    postgres: list[FoundListener] = []
    p11: list[FoundListener] = []
    redis: list[FoundListener] = []
    notes: list[str] = []
    candidates: list[tuple[str, str, int]] = []  # (owner, address, port) of each published port
    hsm_env: dict[str, str] = {}
    for attrs in inspected:
        name = str(attrs.get("Name") or "").lstrip("/")
        config, settings = attrs.get("Config") or {}, attrs.get("NetworkSettings") or {}
        raw_mounts = attrs.get("Mounts") or []
        binds = tuple(BindMount(Path(m["Source"]), str(m.get("Destination")), bool(m.get("RW")))
                      for m in raw_mounts if m.get("Type") == "bind" and m.get("Source"))
        published = []
        for container_port, bindings in sorted((settings.get("Ports") or {}).items()):
            for binding in bindings or []:
                if str(container_port).endswith("/tcp") and binding.get("HostPort"):
                    host_ip = str(binding.get("HostIp") or "0.0.0.0")
                    published.append((host_ip, int(binding["HostPort"]), str(container_port)))
                    candidates.append((name, connect_address(host_ip), int(binding["HostPort"])))
        service = str((config.get("Labels") or {}).get("com.docker.compose.service", ""))
        found.append(FoundContainer(name, service, str(config.get("Image") or ""), tuple(published), binds))
        if not (pid := int((attrs.get("State") or {}).get("Pid") or 0)):
            continue  # not running any more: no socket to see
        for inside, command in unix_listeners(pid, proc):
            on_host = _host_path(inside, raw_mounts)
            if on_host is None:
                continue
            listener = FoundListener(str(on_host[0]), None, command, name, on_host[1])
            if command.startswith("postgres") and Path(inside).name.startswith(".s.PGSQL."):
                postgres.append(listener)
            elif command.startswith("p11-kit"):
                p11.append(listener)
                # SoftHSM's configuration names its token files (keys.read_at_start looks for who
                # holds them open): a path, the one variable of the environment read here.
                conf = next((e[14:] for e in config.get("Env") or [] if e.startswith("SOFTHSM2_CONF=")), "")
                if conf and (conf_on_host := _host_path(conf, raw_mounts)) is not None:
                    hsm_env["SOFTHSM2_CONF"] = str(conf_on_host[0])
        addresses = sorted(str(n.get("IPAddress")) for n in (settings.get("Networks") or {}).values()
                           if n.get("IPAddress"))
        scan = scan_process_trees([(name, pid, True)], proc)
        notes.extend(f"{name}: {line}" for line in scan.unreadable)
        for sock in scan.sockets:
            if sock.command.startswith("redis-server") and addresses and sock.family == "tcp":
                redis.append(FoundListener(addresses[0], sock.port, sock.command, name))
    mounts = [m for c in found for m in c.mounts]
    # A CA certificate is looked for among the files mounted into the service's containers and
    # beside them (an edge certificate and its CA often share a directory).
    places = [m.source for m in mounts] + [m.source.parent for m in mounts if not m.source.is_dir()]
    edge = find_edge(candidates, places, timeout_s)
    return Discovery(
        backend="docker", project=project, containers=tuple(found), edge=edge,
        postgres_sockets=tuple(postgres), p11_sockets=tuple(sorted(p11, key=lambda s: not s.bind_mounted)),
        redis=tuple(redis), hsm_env=tuple(hsm_env.items()), log_dirs=tuple(_log_dirs(mounts)),
        config_paths=tuple(_config_paths(mounts)),
        backup_dir=next((m.source for m in mounts if m.writable and "backup" in Path(m.target).name
                         and m.source.is_dir()), None),
        drill_log=next((m.source for m in mounts if m.writable and "drill" in Path(m.target).name
                        and m.source.is_file()), None),
        notes=tuple(notes))


def _log_dirs(mounts: Sequence[BindMount]) -> list[Path]:
    """Writable mounted directories named ``*log*`` or holding ``*.log`` files, each once."""
    found: dict[Path, None] = {}
    for mount in mounts:
        if mount.writable and mount.source.is_dir() and ("log" in Path(mount.target).name
                                                         or _candidate_files([mount.source], (".log",))):
            found.setdefault(mount.source, None)
    return list(found)


def _config_paths(mounts: Sequence[BindMount]) -> list[Path]:
    """Read-only mounts that are configuration: files with a configuration suffix, and
    directories holding one."""
    found: dict[Path, None] = {}
    for mount in mounts:
        # Docker's secrets (and anything the operator keeps under a "secrets" directory) hold
        # passwords by design: the key search is for keys that must not be there.
        if mount.writable or "secrets" in (*mount.source.parts, *Path(mount.target).parts):
            continue
        if _candidate_files([mount.source], _CONFIG_SUFFIXES):
            found.setdefault(mount.source, None)
    return list(found)
