"""HTTP probes of the edge: sampled responses over HTTPS and over plain HTTP.

The connection goes to ``edge.connect_address`` while SNI, certificate checking
and the Host header use ``edge.host``, so a test host needs no DNS entry.
Redirects are never followed: a redirect is itself what is being observed.
"""

from __future__ import annotations

import errno
import ipaddress
import re
import socket
import ssl
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import httpx

from harness.deadline import (
    Deadline,
    DeadlineTransport,
    Exchange,
    ExchangeExpired,
    TlsWithin,
    expired_exchange,
    recv_within,
)
from harness.outcomes import ProbeError
from harness.policy import Policy
from harness.probes.tls import edge_tls_context
from harness.profile import NO_HTTP_PORT, Edge
from harness.trickling_peers import RUN_TRICKLERS, TLS_HANDSHAKE, PeerKnownToTrickle, http_get

# Bodies are read up to this many bytes: enough to tell a tiny redirect page
# from real content, without downloading whatever the edge chooses to send.
MAX_BODY_BYTES = 64 * 1024
EXCERPT_CHARS = 120
# Statuses a proxy answers with when what is behind it did not answer.
GATEWAY_ERRORS = frozenset({502, 503, 504})


@dataclass(frozen=True)
class HttpSample:
    """One response of the edge to a GET of a sampled path.

    Attributes:
        scheme: ``https`` or ``http``.
        path: the sampled path.
        url: the URL as the edge's users would type it (host name, not address).
        status: the HTTP status code.
        headers: every header as (lower-case name, value), in order, repeats kept.
        body_bytes: length of the body read (capped at MAX_BODY_BYTES + 1).
        content_type: the Content-Type header ("" when absent).
        body_excerpt: the first characters of the body, for the evidence.
    """

    scheme: Literal["https", "http"]
    path: str
    url: str
    status: int
    headers: tuple[tuple[str, str], ...]
    body_bytes: int
    content_type: str
    body_excerpt: str = ""

    def header_values(self, name: str) -> tuple[str, ...]:
        """Every value of one header (case-insensitive name)."""
        wanted = name.lower()
        return tuple(value for key, value in self.headers if key == wanted)

    def header(self, name: str) -> str | None:
        """The first value of one header, None when absent."""
        values = self.header_values(name)
        return values[0] if values else None


@dataclass(frozen=True)
class EdgeSamples:
    """The edge's responses to every sampled path over one scheme.

    Attributes:
        scheme: ``https`` or ``http``.
        host: the host name used (Host header, SNI).
        port: the port fetched.
        samples: one response per sampled path, in the profile's order.
    """

    scheme: Literal["https", "http"]
    host: str
    port: int
    samples: tuple[HttpSample, ...] = field(default_factory=tuple)

    def origin_not_reached(self, problems: Sequence[str] = ()) -> str | None:
        """Why the samples say nothing about the service's own responses, or None.

        When nothing was sampled, nothing was seen. When every sampled response is
        a gateway error, only the edge's error page was seen: headers the service
        adds (or drops) were never observed, and what the error pages lack
        (``problems``) is said, not judged: a service that is down is not a broken
        promise.
        """
        if not self.samples:
            return f"No {self.scheme.upper()} response was sampled (edge.sample_paths is empty)."
        statuses = [sample.status for sample in self.samples]
        if all(status in GATEWAY_ERRORS for status in statuses):
            return (f"Every sampled response is a gateway error (statuses {', '.join(map(str, statuses))}): "
                    "the service behind the edge did not answer, so its own responses were not observed."
                    + (f" (The error pages themselves: {'; '.join(problems)}.)" if problems else ""))
        return None


def _url_host(address: str) -> str:
    try:
        return f"[{address}]" if ipaddress.ip_address(address).version == 6 else address
    except ValueError:
        return address


def public_url(scheme: str, host: str, port: int, path: str) -> str:
    """The URL a user would type: the default port for the scheme is left out."""
    default = 443 if scheme == "https" else 80
    return f"{scheme}://{host}{'' if port == default else f':{port}'}{path}"


def fetch_samples(edge: Edge, policy: Policy, scheme: Literal["https", "http"], *,
                  port: int | None = None) -> EdgeSamples:
    """GET every ``edge.sample_paths`` entry over ``scheme``, without following redirects.

    Over HTTPS the certificate is verified against the profile's trust anchor.
    ``port`` replaces the profile's port for the scheme (the plaintext port looked at
    when the profile says there is none).

    Raises:
        ProbeError: the scheme's port is not configured, or the edge cannot be
            reached, does not answer in time, or fails TLS verification.
    """
    if port is None:
        port = edge.https_port if scheme == "https" else edge.http_port
    if port is None:
        raise ProbeError(f"the profile has no {scheme} port for the edge")
    timeout = httpx.Timeout(policy.timeouts.request_s, connect=policy.timeouts.connect_s)
    verify: ssl.SSLContext | bool = edge_tls_context(edge) if scheme == "https" else False
    # Each GET, its TLS handshake and body included, ends within timeouts.request_s as a
    # whole: httpx's own timeouts bound each read, which a trickling edge never exceeds.
    # A GET that trickled once in the run (or the port's TLS handshake) is not asked again;
    # the other paths are (harness.trickling_peers).
    transport = DeadlineTransport(verify=verify, seconds=policy.timeouts.request_s, peer="the edge")
    address = f"{edge.connect_address}:{port}"
    samples = []
    with httpx.Client(transport=transport, timeout=timeout, follow_redirects=False, trust_env=False,
                      headers={"user-agent": "votriz-audit"}) as client:
        for path in edge.sample_paths:
            shown = public_url(scheme, edge.host, port, path)
            asked = http_get(path, scheme)
            try:
                RUN_TRICKLERS.refuse(address, *((TLS_HANDSHAKE, asked) if scheme == "https" else (asked,)))
            except PeerKnownToTrickle as known:
                raise ProbeError(f"GET {shown}: {known}") from None
            request = client.build_request(
                "GET", f"{scheme}://{_url_host(edge.connect_address)}:{port}{path}",
                headers={"host": public_url(scheme, edge.host, port, "").split("://", 1)[1]},
                extensions={"sni_hostname": edge.host} if scheme == "https" else {},
            )
            try:
                response = client.send(request, stream=True)
                try:
                    body = b""
                    for chunk in response.iter_raw():
                        body += chunk
                        if len(body) > MAX_BODY_BYTES:
                            break
                finally:
                    response.close()
            except httpx.TimeoutException as exc:
                expired = expired_exchange(exc)
                if expired is not None and expired.received:
                    RUN_TRICKLERS.remember(address, asked, expired)
                    raise ProbeError(f"GET {shown}: {expired.expired_sentence()}") from None
                raise ProbeError(f"GET {shown}: no answer within the policy's timeouts "
                                 f"(connect {policy.timeouts.connect_s:g}s, "
                                 f"request {policy.timeouts.request_s:g}s)") from None
            except httpx.HTTPError as exc:
                raise ProbeError(f"GET {shown}: cannot reach {edge.connect_address}:{port}: "
                                 f"{type(exc).__name__}: {exc}") from None
            samples.append(HttpSample(
                scheme=scheme, path=path, url=shown, status=response.status_code,
                headers=tuple((k.lower(), v) for k, v in response.headers.multi_items()),
                body_bytes=min(len(body), MAX_BODY_BYTES + 1),
                content_type=response.headers.get("content-type", ""),
                body_excerpt=body[:EXCERPT_CHARS].decode("utf-8", "replace"),
            ))
    return EdgeSamples(scheme=scheme, host=edge.host, port=port, samples=tuple(samples))


@dataclass(frozen=True)
class PlainHttpAnswer:
    """What a TCP listener said to one plain-text HTTP request.

    Attributes:
        address: the address connected to.
        port: the port connected to.
        connected: whether the TCP connection was accepted.
        answered_http: whether the first bytes back were an HTTP status line.
        status: the HTTP status, when it answered HTTP.
        location: the Location header, when present.
        first_line: the first line received (at most 120 characters), for the record.
        speaks_tls: whether the listener completes a TLS handshake; probed only
            when it answered plain HTTP with something other than a redirect.
        error: why nothing was read, if so (timeout, reset ...).
    """

    address: str
    port: int
    connected: bool
    answered_http: bool
    status: int | None = None
    location: str | None = None
    first_line: str = ""
    speaks_tls: bool | None = None
    error: str | None = None


_STATUS_LINE = re.compile(rb"^HTTP/\d(?:\.\d)? (\d{3})")
_LOCATION = re.compile(rb"^location:[ \t]*(.*?)[ \t]*$", re.IGNORECASE | re.MULTILINE)


def _read_head(sock: socket.socket, exchange: Exchange, limit: int = 8192) -> bytes:
    """Read until the end of the HTTP head, the peer closes, ``limit`` bytes, or the deadline.

    A peer that says something and then waits (Redis answering an error, then
    expecting the next command) yields what it said, as does one that trickles
    past the exchange's deadline; only total silence times out.
    """
    data = b""
    while b"\r\n\r\n" not in data and len(data) < limit:
        try:
            chunk = recv_within(sock, exchange, 4096)
        except ExchangeExpired:
            if data:
                break
            raise TimeoutError from None
        if not chunk:
            break
        data += chunk
    return data


def parse_http_head(head: bytes) -> tuple[int | None, str | None, str]:
    """``(status, location, first_line)`` of whatever bytes a listener sent back.

    ``status`` is None when the bytes do not start with an HTTP status line; the
    first line is cut to EXCERPT_CHARS and made printable (binary protocols answer
    with anything).
    """
    first = head.split(b"\r\n", 1)[0][:EXCERPT_CHARS].decode("latin-1")
    first = "".join(ch if ch.isprintable() else "." for ch in first)
    match = _STATUS_LINE.match(head)
    if match is None:
        return None, None, first
    header_block = head.split(b"\r\n\r\n", 1)[0]
    location_match = _LOCATION.search(header_block.replace(b"\r\n", b"\n"))
    location = location_match.group(1).decode("latin-1") if location_match else None
    return int(match.group(1)), location, first


def speaks_tls(address: str, port: int, host: str, timeout_s: float) -> bool:
    """Whether the listener completes a TLS handshake (certificate not judged here)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((address, port), timeout=timeout_s) as raw, \
                context.wrap_socket(raw, server_hostname=host):
            return True
    except (OSError, ssl.SSLError):
        return False


def probe_plain_http(address: str, port: int, host: str, timeout_s: float,
                     path: str = "/") -> PlainHttpAnswer:
    """Send one plain-text ``GET`` to a TCP listener and record what comes back.

    Never raises for the listener's behaviour (silence, reset, binary answers are
    all observations); every wait is bounded by ``timeout_s``.
    """
    request = (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: votriz-audit\r\n"
               "Accept: */*\r\nConnection: close\r\n\r\n").encode("ascii")
    try:
        sock = socket.create_connection((address, port), timeout=timeout_s)
    except OSError as exc:
        return PlainHttpAnswer(address, port, connected=False, answered_http=False,
                               error=exc.strerror or type(exc).__name__)
    # The whole exchange, not each read, is bounded by ``timeout_s``: a listener that
    # trickles its answer is heard for that long and no longer.
    # No address: a listener that says something and waits (Redis after its error) is not a
    # trickling peer to remember for the run (harness.trickling_peers).
    exchange = Exchange(f"{address}:{port}", Deadline(timeout_s, "timeouts.connect_s"))
    try:
        sock.settimeout(timeout_s)
        sock.sendall(request)
        head = _read_head(sock, exchange)
    except TimeoutError:
        return PlainHttpAnswer(address, port, connected=True, answered_http=False,
                               error=f"no answer within {timeout_s:g}s")
    except OSError as exc:
        return PlainHttpAnswer(address, port, connected=True, answered_http=False,
                               error=exc.strerror or type(exc).__name__)
    finally:
        sock.close()
    status, location, first = parse_http_head(head)
    if status is None:
        return PlainHttpAnswer(address, port, connected=True, answered_http=False, first_line=first,
                               error=None if head else "closed without answering")
    tls: bool | None = None
    if not (300 <= status < 400 and location and location.lower().startswith("https://")):
        tls = speaks_tls(address, port, host, timeout_s)
    return PlainHttpAnswer(address, port, connected=True, answered_http=True, status=status,
                           location=location, first_line=first, speaks_tls=tls)


# --- The plaintext port as found: answers, or turned away while HTTPS answers ---------------

# The standard plaintext port: where a browser goes for http://HOST/, and so the only port whose
# refusal says that nothing serves plain HTTP; also the port looked at when the profile says the
# edge serves no plain HTTP (read at each call).
STANDARD_HTTP_PORT = 80
# Linux's IP_RECVERR / IPV6_RECVERR (the socket module of Python 3.11 does not name them): with
# them set, the ICMP error that ended a connect() waits in the socket's error queue, its sender
# with it, so a refusal can be told a TCP reset or an ICMP message, and from whom.
_RECVERR: dict[int, tuple[int, int]] = {socket.AF_INET: (socket.IPPROTO_IP, 11),
                                        socket.AF_INET6: (socket.IPPROTO_IPV6, 25)}
_READS_ICMP = sys.platform.startswith("linux")
_SO_EE_ORIGIN_ICMP: dict[int, int] = {socket.AF_INET: 2, socket.AF_INET6: 3}
# Why a connection can fail at once without the edge having refused it.
_NOT_THE_EDGE = {
    errno.EHOSTUNREACH: "an ICMP rejection from a router or firewall on the way, or this host's own routing",
    errno.ENETUNREACH: "an ICMP rejection from a router or firewall on the way, or this host's own routing",
    errno.EACCES: "this host refused to send it (its own firewall, routing or security policy)",
    errno.EPERM: "this host refused to send it (its own firewall, routing or security policy)",
}


@dataclass(frozen=True)
class PortKnock:
    """One TCP connection attempt, closed as soon as it is answered.

    Attributes:
        address: the address connected to.
        port: the port connected to.
        state: ``accepted``; ``refused`` (ECONNREFUSED: a TCP reset, or an ICMP port unreachable
            sent by anything but this host); ``silent`` (no answer within the wait: the SYN or its
            answer was dropped somewhere, on this host, on the path or at the edge); ``failed``
            (anything else: the name does not resolve, an ICMP host/network unreachable, this
            host's own firewall refusing the send or answering for the edge).
        detail: what was seen and the errno's name (``a TCP reset (ECONNREFUSED)``, ``an ICMP port
            unreachable from 10.0.0.2, the edge's address (ECONNREFUSED)``, ``No route to host
            (EHOSTUNREACH): ...``); for silence, the wait.
        waited_s: seconds until the answer, or until the wait ended.
        wait: the wait allowed, as the policy states it (``the policy's 5 s (timeouts.connect_s)``).
        icmp_from: the sender of the ICMP message that ended the attempt, when one did.
    """

    address: str
    port: int
    state: Literal["accepted", "refused", "silent", "failed"]
    detail: str
    waited_s: float
    wait: str
    icmp_from: str | None = None


def _icmp_sender(sock: socket.socket, family: int) -> str | None:
    """The sender of the ICMP error queued on ``sock`` (IP_RECVERR), None when none is queued."""
    sock.setblocking(False)
    try:
        _, ancillary, _, _ = sock.recvmsg(1, 1024, socket.MSG_ERRQUEUE)
    except OSError:
        return None
    for _, _, data in ancillary:
        # struct sock_extended_err (16 bytes: errno, origin, type, code, pad, info, data), then
        # the offender's sockaddr (SO_EE_OFFENDER).
        if len(data) < 24 or data[4] != _SO_EE_ORIGIN_ICMP.get(family):
            continue
        if family == socket.AF_INET:
            return socket.inet_ntop(socket.AF_INET, data[20:24])
        if len(data) >= 40:
            return socket.inet_ntop(socket.AF_INET6, data[24:40])
    return None


def _is_own_address(address: str, family: int) -> bool:
    """Whether ``address`` is one of this host's (a socket can be bound to it)."""
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((address, 0))
        except OSError:
            return False
    return True


def _refusal(exc: OSError, sock: socket.socket, family: int, peer: str) -> tuple[str, str, str | None]:
    """``(state, detail, icmp_from)`` of a connect() that failed at once."""
    name = errno.errorcode.get(exc.errno or 0, "")
    said = f"{exc.strerror or type(exc).__name__}{f' ({name})' if name else ''}"
    if exc.errno != errno.ECONNREFUSED:
        why = _NOT_THE_EDGE.get(exc.errno or 0)
        return "failed", f"{said}: {why}, not a refusal by the edge" if why else said, None
    if not _READS_ICMP:
        return "refused", f"a TCP reset or an ICMP port unreachable ({name})", None
    sender = _icmp_sender(sock, family)
    if sender is None:
        return "refused", f"a TCP reset ({name})", None
    if sender == peer:
        return "refused", f"an ICMP port unreachable from {sender}, the edge's address ({name})", sender
    if _is_own_address(sender, family):
        return "failed", (f"an ICMP port unreachable from {sender}, an address of this host ({name}): this "
                          "host's own firewall refused the connection, not the edge"), sender
    return "refused", (f"an ICMP port unreachable from {sender}, a router or firewall on the way answering "
                       f"for the edge ({name})"), sender


def knock(address: str, port: int, deadline: Deadline) -> PortKnock:
    """Open (and close) one TCP connection to ``address:port`` within ``deadline``; a refusal
    says whether it was a TCP reset or an ICMP message, and whose (this host's own is no
    refusal by the edge: ``failed``)."""
    try:
        found = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        return PortKnock(address, port, "failed", exc.strerror or type(exc).__name__, deadline.elapsed(),
                         deadline.limit())
    state, detail, sender = "failed", "no address", None
    for family, kind, proto, _, sockaddr in found:
        with socket.socket(family, kind, proto) as sock:
            if _READS_ICMP and family in _RECVERR:
                sock.setsockopt(*_RECVERR[family], 1)
            sock.settimeout(max(deadline.remaining(), 0.001))
            try:
                sock.connect(sockaddr)
            except TimeoutError:
                state, detail, sender = "silent", f"no answer within {deadline.limit()}", None
            except OSError as exc:
                state, detail, sender = _refusal(exc, sock, family, str(sockaddr[0]))
            else:
                return PortKnock(address, port, "accepted", "", deadline.elapsed(), deadline.limit())
    return PortKnock(address, port, state, detail, deadline.elapsed(), deadline.limit(),  # type: ignore[arg-type]
                     sender)


@dataclass(frozen=True)
class TlsPortAnswer:
    """Whether the edge's HTTPS port answered a TLS ClientHello: the sign that the edge is up.

    The certificate is not judged here (transit.certificate does that): any TLS answer,
    a refusal by alert included, shows that the host and its HTTPS port are up.

    Attributes:
        address: the address connected to.
        port: the HTTPS port.
        answered: the handshake completed, or the peer answered it with anything at all.
        detail: what happened, in words (``a TLS handshake completed``).
    """

    address: str
    port: int
    answered: bool
    detail: str


def tls_port_answer(edge: Edge, policy: Policy) -> TlsPortAnswer:
    """Open a TLS handshake with the edge's HTTPS port: connecting within ``timeouts.connect_s``,
    the whole handshake within ``timeouts.request_s`` (a trickling peer cannot stretch it)."""
    address, port = edge.connect_address, edge.https_port
    connect = Deadline(policy.timeouts.connect_s, "timeouts.connect_s")
    try:
        sock = socket.create_connection((address, port), timeout=connect.seconds)
    except TimeoutError:
        return TlsPortAnswer(address, port, False, f"no answer within {connect.limit()}")
    except OSError as exc:
        return TlsPortAnswer(address, port, False, exc.strerror or type(exc).__name__)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    handshake = Deadline(policy.timeouts.request_s, "timeouts.request_s")
    exchange = Exchange(f"the edge {address}:{port}", handshake, awaited="its TLS handshake")
    try:
        with sock:
            TlsWithin(sock, context, edge.host, exchange).handshake()
    except ExchangeExpired as expired:
        return TlsPortAnswer(address, port, exchange.received > 0, str(expired))
    except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
        return TlsPortAnswer(address, port, False,
                             "it accepted the connection and closed it without a TLS answer")
    except ssl.SSLError as exc:
        return TlsPortAnswer(address, port, True,
                             f"it answered the TLS handshake with an error: {exc.reason or exc}")
    except OSError as exc:
        return TlsPortAnswer(address, port, False, f"it accepted the connection, then: "
                                                   f"{exc.strerror or type(exc).__name__}")
    return TlsPortAnswer(address, port, True, f"a TLS handshake completed in {connect.elapsed():.2f} s")


@dataclass(frozen=True)
class PlaintextPortVisit:
    """The edge's plaintext port as found: its answers to the sampled paths, or how it turned
    the connection away and whether the HTTPS port answered at the same time.

    Attributes:
        port: the port visited: ``edge.http_port``, or STANDARD_HTTP_PORT when the profile
            says the edge serves no plain HTTP.
        profile_says_none: the profile says so (``http_port = "none"``).
        knock: the TCP connection attempt to ``port``.
        samples: the answers to every sampled path when the port accepted; None otherwise.
        https: the HTTPS port's answer, asked only when the standard port accepted nothing.
        standard_port: the port browsers use for http:// (STANDARD_HTTP_PORT when visited): only
            its refusal says that nothing serves plain HTTP.
    """

    port: int
    profile_says_none: bool
    knock: PortKnock
    samples: EdgeSamples | None = None
    https: TlsPortAnswer | None = None
    standard_port: int = 80


def visit_plaintext_port(edge: Edge, policy: Policy) -> PlaintextPortVisit:
    """Knock on the edge's plaintext port; GET every sampled path when it accepts, else ask the
    HTTPS port whether the edge is up at all.

    Raises:
        ProbeError: the port accepted a connection but the GETs could not be completed
            (:func:`fetch_samples`'s reasons: no answer in time, a reset, a trickle ...).
    """
    says_none, standard = edge.http_port is None, STANDARD_HTTP_PORT
    port = standard if edge.http_port is None else edge.http_port
    knocked = knock(edge.connect_address, port, Deadline(policy.timeouts.connect_s, "timeouts.connect_s"))
    if knocked.state != "accepted":
        # Whether the edge was up tells a refusal (or silence) on port 80 from an edge that is down;
        # another port that turns connections away is a profile to check, whatever HTTPS says.
        asked = knocked.state in ("refused", "silent") and port == standard
        https = tls_port_answer(edge, policy) if asked else None
        return PlaintextPortVisit(port, says_none, knocked, https=https, standard_port=standard)
    try:
        samples = fetch_samples(edge, policy, "http", port=port)
    except ProbeError as exc:
        if not says_none:
            raise
        raise ProbeError(f'port {port} accepted a connection although the profile says the edge serves '
                         f'no plain HTTP (edge.http_port = "{NO_HTTP_PORT}"); {exc}') from None
    return PlaintextPortVisit(port, says_none, knocked, samples=samples, standard_port=standard)
