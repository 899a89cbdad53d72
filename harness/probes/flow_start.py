"""What a TCP flow's first client bytes are: a TLS ClientHello (and the name it asks for), a
plaintext HTTP request, or something else.

Pure parsers over bytes the wire capture (:mod:`harness.probes.wire`) collected; they never
raise on any input and never keep more than they report: a ClientHello gives its server name,
an HTTP request its method and path without the query (a query string or a header may carry
a key), anything else a short description without the bytes themselves.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

#: The kinds of flow start the wire check tells apart.
StartKind = Literal["tls-client-hello", "http-request", "tls-records", "other", "no-payload"]

TLS_HANDSHAKE, TLS_APPLICATION_DATA, TLS_ALERT, TLS_CHANGE_CIPHER_SPEC = 22, 23, 21, 20
CLIENT_HELLO = 1
SERVER_NAME_EXTENSION = 0
HOST_NAME = 0
# A ClientHello is at most 2^24 bytes by its length field; real ones are under 16 KiB.
MAX_HANDSHAKE_BYTES = 1 << 16
# An HTTP request line must end within this many bytes to be recognised as one.
MAX_REQUEST_LINE = 8192
MAX_PATH_SHOWN = 120

_REQUEST_LINE = re.compile(rb"([A-Z][A-Z-]{1,19}) (\S{1,8000}) HTTP/\d(?:\.\d)?\r?\n")


@dataclass(frozen=True)
class ClientHello:
    """A TLS ClientHello found at the start of a flow.

    Attributes:
        server_name: the host name of its ``server_name`` extension (SNI), lower-cased; None
            when it carries none (a client sends none for an IP address).
        complete: whether the whole ClientHello was in the bytes given (when not, a
            ``server_name`` further on was not seen).
        record_version: the record layer's version, e.g. ``0x0301``.
    """

    server_name: str | None
    complete: bool
    record_version: int


@dataclass(frozen=True)
class HttpRequestLine:
    """A plaintext HTTP request line.

    Attributes:
        method: ``GET``, ``POST`` ...
        path: the request target up to its query string, at most 120 characters.
    """

    method: str
    path: str

    @property
    def text(self) -> str:
        """``POST /resend/emails``."""
        return f"{self.method} {self.path}"


@dataclass(frozen=True)
class FlowStart:
    """What a flow's first client bytes are.

    Attributes:
        kind: ``tls-client-hello``, ``http-request``, ``tls-records`` (TLS records other than a
            ClientHello: a flow whose start was not captured), ``other`` or ``no-payload``.
        server_name: the ClientHello's server name, if any.
        request: the HTTP request line (method and path), if any.
        note: what the bytes are when neither (``PostgreSQL SSLRequest``, ``8 bytes, not TLS or
            HTTP``), or that the ClientHello was cut short.
    """

    kind: StartKind
    server_name: str | None = None
    request: str | None = None
    note: str = ""


def _u16(data: bytes, at: int) -> int:
    return int.from_bytes(data[at:at + 2], "big")


def _handshake_bytes(data: bytes) -> tuple[bytes, int, bool] | None:
    """The handshake bytes carried by the leading TLS handshake records, their record
    version, and whether the last record was whole; None when ``data`` does not start
    with a handshake record."""
    if len(data) < 5 or data[0] != TLS_HANDSHAKE or data[1] != 3 or data[2] > 4:
        return None
    version = _u16(data, 1)
    handshake = bytearray()
    at = 0
    while at + 5 <= len(data) and data[at] == TLS_HANDSHAKE and len(handshake) < MAX_HANDSHAKE_BYTES:
        length = _u16(data, at + 3)
        fragment = data[at + 5:at + 5 + length]
        handshake += fragment
        if len(fragment) < length:
            return bytes(handshake), version, False
        at += 5 + length
    return bytes(handshake), version, True


def _server_name(extensions: bytes) -> str | None:
    """The host name in the ``server_name`` extension of a whole extensions block."""
    at = 0
    while at + 4 <= len(extensions):
        kind, length = _u16(extensions, at), _u16(extensions, at + 2)
        body = extensions[at + 4:at + 4 + length]
        at += 4 + length
        if kind != SERVER_NAME_EXTENSION:
            continue
        inner = 2
        end = min(len(body), 2 + _u16(body, 0))
        while inner + 3 <= end:
            name_type, name_length = body[inner], _u16(body, inner + 1)
            name = body[inner + 3:inner + 3 + name_length]
            inner += 3 + name_length
            if name_type == HOST_NAME and name:
                return name.decode("ascii", "replace").lower()[:255]
        return None
    return None


def parse_client_hello(data: bytes) -> ClientHello | None:
    """The ClientHello ``data`` starts with, or None when it does not start with one.

    ``data`` is the flow's first client bytes in order; a ClientHello split over several
    records is joined. Whatever ``data`` holds, this returns (never raises).
    """
    found = _handshake_bytes(data)
    if found is None:
        return None
    handshake, version, whole_records = found
    if len(handshake) < 4 or handshake[0] != CLIENT_HELLO:
        return None
    length = int.from_bytes(handshake[1:4], "big")
    body = handshake[4:4 + length]
    complete = whole_records and len(body) == length
    # client_version (2), random (32), then the session id, cipher suites and compression methods.
    at = 34
    if at >= len(body):
        return ClientHello(None, False, version)
    at += 1 + body[at]
    if at + 2 > len(body):
        return ClientHello(None, False, version)
    at += 2 + _u16(body, at)
    if at + 1 > len(body):
        return ClientHello(None, False, version)
    at += 1 + body[at]
    if at + 2 > len(body):
        # No extensions at all (allowed before TLS 1.3) when the body ends here.
        return ClientHello(None, complete and at == len(body), version)
    extensions = body[at + 2:at + 2 + _u16(body, at)]
    whole = complete and len(extensions) == _u16(body, at)
    return ClientHello(_server_name(extensions), whole, version)


def parse_request_line(data: bytes) -> HttpRequestLine | None:
    """The HTTP/1 request line (or HTTP/2 preface) ``data`` starts with, else None (never raises)."""
    match = _REQUEST_LINE.match(data[:MAX_REQUEST_LINE])
    if match is None:
        return None
    target = match.group(2).decode("ascii", "replace")
    path = target.split("?", 1)[0].split("#", 1)[0]
    return HttpRequestLine(match.group(1).decode("ascii"), path[:MAX_PATH_SHOWN])


def _describe_other(data: bytes) -> str:
    """A short description of bytes that are neither TLS nor HTTP, without quoting them."""
    if len(data) >= 8 and data[:8] == b"\x00\x00\x00\x08\x04\xd2\x16\x2f":
        return "PostgreSQL SSLRequest"
    if len(data) >= 8 and data[4:8] == b"\x00\x03\x00\x00":
        return "PostgreSQL startup message (no TLS)"
    if data[:1] in (b"*", b"$") and b"\r\n" in data[:64]:
        return "Redis protocol (RESP)"
    return f"{len(data)} bytes, neither a TLS record nor an HTTP request"


def _through_proxy(data: bytes, connect: HttpRequestLine) -> FlowStart:
    """A flow through an HTTP proxy: judged by what the client sent once the tunnel was asked
    for (the proxy's answer comes in between, from the other side)."""
    head_end = data.find(b"\r\n\r\n", 0, MAX_REQUEST_LINE)
    inner = (classify_flow_start(data[head_end + 4:], tunnelled=True) if head_end >= 0
             else FlowStart("no-payload"))
    via = f"through an HTTP proxy (CONNECT {connect.path})"
    if inner.kind == "no-payload":
        return FlowStart("other", note=f"{via}; nothing after the CONNECT was captured")
    return FlowStart(inner.kind, server_name=inner.server_name, request=inner.request,
                     note=f"{via}{'; ' + inner.note if inner.note else ''}")


def classify_flow_start(data: bytes, *, began_in_capture: bool = True, tunnelled: bool = False) -> FlowStart:
    """What the first client bytes of a flow are (``began_in_capture``: the SYN was seen, so
    ``data`` is the flow's very beginning; ``tunnelled``: they follow a CONNECT already, and
    another CONNECT is then a plaintext request like any other). Never raises."""
    if not data:
        return FlowStart("no-payload")
    hello = parse_client_hello(data)
    if hello is not None:
        note = "" if hello.complete or hello.server_name else "the ClientHello was cut short"
        return FlowStart("tls-client-hello", server_name=hello.server_name, note=note)
    request = parse_request_line(data)
    if request is not None and request.method == "CONNECT" and not tunnelled:
        return _through_proxy(data, request)
    if request is not None:
        return FlowStart("http-request", request=request.text)
    if (len(data) >= 5 and data[0] in (TLS_APPLICATION_DATA, TLS_ALERT, TLS_CHANGE_CIPHER_SPEC,
                                        TLS_HANDSHAKE) and data[1] == 3 and data[2] <= 4):
        note = ("TLS records of a flow begun before the capture" if not began_in_capture
                else "TLS records, but no ClientHello first")
        return FlowStart("tls-records", note=note)
    return FlowStart("other", note=_describe_other(data))
