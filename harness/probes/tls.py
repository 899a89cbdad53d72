"""The TLS probe: one sslyze scan of the edge, reduced to frozen observations.

One scan covers every protocol version from SSLv2 to TLS 1.3, the certificate
and the HTTP headers of ``/``, so the whole TLS stage of a run costs a single
scan. sslyze carries its own OpenSSL build, so old protocol versions are really
offered, not just refused by the local library.

The certificate is judged the way clients judge it: one handshake of our own
lets OpenSSL build the chain from what the server sent to the profile's trust
anchor (as ``openssl s_client``, testssl.sh and browsers do). sslyze's own
validation (pyca/cryptography's strict RFC 5280 / CA/Browser Forum verifier)
is kept for the record only, beside plain-words lint findings
(``harness.certificate_lint``): a leaf without an Authority Key Identifier is
accepted by every client, so it is an observation, not a broken promise.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import tempfile
import time
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

from harness.certificate_lint import LintFinding, lint_chain
from harness.deadline import Deadline, Exchange, ExchangeExpired, TlsWithin, run_in_child
from harness.outcomes import ProbeError
from harness.policy import Policy, TlsVersion
from harness.probes.trust_store import SUPPLIED_CA_STORE as SUPPLIED_CA_STORE
from harness.probes.trust_store import trust_anchor_pem, trust_store
from harness.profile import Edge
from harness.trickling_peers import RUN_TRICKLERS, TLS_HANDSHAKE, PeerKnownToTrickle, http_get

# OpenSSL's X509_V_FLAG_NO_CHECK_TIME: the client-like validation judges the chain only;
# every certificate's validity window is judged by the check at its own (injectable) time.
_X509_V_FLAG_NO_CHECK_TIME = 0x200000

# Every protocol version the scan tries, oldest first, with the sslyze scan command
# (also the attribute name on sslyze's AllScanCommandsAttempts) that tries it.
TLS_VERSION_COMMANDS: dict[TlsVersion, str] = {
    "SSLv2": "ssl_2_0_cipher_suites",
    "SSLv3": "ssl_3_0_cipher_suites",
    "TLSv1.0": "tls_1_0_cipher_suites",
    "TLSv1.1": "tls_1_1_cipher_suites",
    "TLSv1.2": "tls_1_2_cipher_suites",
    "TLSv1.3": "tls_1_3_cipher_suites",
}


@dataclass(frozen=True)
class TlsVersionProbe:
    """What the scan saw when it offered one protocol version.

    Attributes:
        version: the protocol version offered (policy spelling, e.g. ``TLSv1.2``).
        completed: whether sslyze's scan command for this version ran to the end;
            False means the version could not be tested (see ``error``).
        accepted: whether the server completed a handshake with this version;
            None when the command did not complete.
        cipher_suites: the cipher suites the server accepted with this version.
        error: sslyze's error reason and last line of its trace, when not completed.
    """

    version: TlsVersion
    completed: bool
    accepted: bool | None
    cipher_suites: tuple[str, ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class ChainCertificate:
    """One certificate of the chain the client-like validation built, with its validity.

    Attributes:
        subject: its subject (RFC 4514).
        not_before, not_after: its validity window (timezone-aware UTC).
    """

    subject: str
    not_before: datetime
    not_after: datetime


@dataclass(frozen=True)
class ClientValidation:
    """How a client (OpenSSL, the library testssl.sh and ``openssl s_client`` use) judged the chain.

    Attributes:
        accepted: whether OpenSSL built a chain from what the server sent to the trust
            store, for the server-authentication purpose, validity times left aside;
            None when the handshake failed for another reason (see ``reason``).
        reason: OpenSSL's verification reason when not accepted, or why no result.
        chain: the chain OpenSSL built, leaf first, anchor last.
        verifier: the library that judged (``OpenSSL 3.0.x``).
    """

    accepted: bool | None
    reason: str | None
    chain: tuple[x509.Certificate, ...]
    verifier: str


@dataclass(frozen=True)
class CertificateObservation:
    """The edge's leaf certificate and how it validated against the trust anchor.

    Attributes:
        subject: the leaf's subject (RFC 4514).
        issuer: the leaf's issuer (RFC 4514).
        serial: the leaf's serial number (hex).
        sha256_fingerprint: SHA-256 of the leaf's DER (hex).
        not_before, not_after: the leaf's validity window (timezone-aware UTC).
        dns_names: DNS names in the subject alternative name extension.
        ip_addresses: IP addresses in the subject alternative name extension.
        key_type: ``RSA``, ``EC``, ``Ed25519``, ``Ed448``, ``DSA`` or the class name.
        key_bits: key size in bits (the curve size for EC keys).
        curve: the EC curve name, for EC keys.
        chain_subjects: subjects of the chain the server sent, leaf first.
        anchor_store: name of the trust store judged: sslyze's "Supplied CA file"
            (the profile's trust anchor) or, when the profile names none, "Mozilla".
        chains_to_anchor: whether a client (OpenSSL) built a chain from what the server
            sent to that store, validity times left aside (they are judged with the
            check's time); None when the client-like validation gave no result.
        validation_error: OpenSSL's reason when it did not validate, or why no result.
        verified_chain_subjects: the verified chain up to the anchor, leaf first.
        sni_host: the host name sent in SNI (the name is judged against the SAN).
        other_stores: the other stores' results, for the record only (a private
            CA always fails the built-in ones, so they are never judged).
        issuers: the verified chain's certificates above the leaf, with their validity.
        validated_by: the library whose judgement ``chains_to_anchor`` is.
        strict_verifier_accepts: whether pyca/cryptography's strict RFC 5280 /
            CA/Browser Forum verifier (sslyze's) accepted the chain; recorded, never judged.
        lint_findings: strict-profile findings in plain words; recorded, never judged.
    """

    subject: str
    issuer: str
    serial: str
    sha256_fingerprint: str
    not_before: datetime
    not_after: datetime
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    key_type: str
    key_bits: int | None
    curve: str | None
    chain_subjects: tuple[str, ...]
    anchor_store: str | None
    chains_to_anchor: bool | None
    validation_error: str | None
    verified_chain_subjects: tuple[str, ...]
    sni_host: str
    other_stores: tuple[tuple[str, bool], ...] = ()
    issuers: tuple[ChainCertificate, ...] = ()
    validated_by: str | None = None
    strict_verifier_accepts: bool | None = None
    lint_findings: tuple[LintFinding, ...] = ()


@dataclass(frozen=True)
class HstsObservation:
    """The Strict-Transport-Security header as sslyze parsed it on ``/``.

    Attributes:
        present: whether the header was sent.
        max_age: its max-age, None if absent or unparsable.
        include_subdomains: whether includeSubDomains is set.
        preload: whether preload is set.
    """

    present: bool
    max_age: int | None = None
    include_subdomains: bool = False
    preload: bool = False


@dataclass(frozen=True)
class TlsScan:
    """Everything the single sslyze scan of the edge observed.

    Attributes:
        host: the host name used for SNI and certificate validation.
        address: the IP address connected to.
        port: the TLS port.
        versions: one entry per protocol version tried, oldest first.
        certificate: the leaf certificate, None when the certificate command failed.
        certificate_error: why the certificate command failed, if it did.
        hsts: the HSTS header sslyze saw on ``/``, None when that command failed.
        http_headers_error: why the HTTP headers command failed, if it did.
        duration_s: wall-clock time of the scan.
        sslyze_version: the sslyze version that scanned.
    """

    host: str
    address: str
    port: int
    versions: tuple[TlsVersionProbe, ...]
    certificate: CertificateObservation | None
    certificate_error: str | None
    hsts: HstsObservation | None
    http_headers_error: str | None
    duration_s: float
    sslyze_version: str

    def version(self, name: TlsVersion) -> TlsVersionProbe | None:
        """The probe of one protocol version, None if it was not tried."""
        return next((probe for probe in self.versions if probe.version == name), None)


def edge_tls_context(edge: Edge) -> ssl.SSLContext:
    """The client TLS context of every HTTPS call the harness makes to the service or its fakes.

    It trusts the profile's trust anchor (``edge.trust_anchor``, read once with the safe
    reader and handed to OpenSSL as bytes), or the system store when the profile names
    none, and verifies certificates and host names.

    Raises:
        ProbeError: the trust anchor cannot be read or is not a PEM certificate.
    """
    if edge.trust_anchor is None:
        return ssl.create_default_context()
    try:
        return ssl.create_default_context(cadata=trust_anchor_pem(edge.trust_anchor))
    except ssl.SSLError as exc:
        raise ProbeError(f"cannot load trust anchor {edge.trust_anchor}: {exc}") from None


def _trace_tail(trace: Any) -> str:
    """The last line of a TracebackException: the exception and its message."""
    if trace is None:
        return ""
    lines = [line.strip() for line in trace.format_exception_only() if line.strip()]
    return lines[-1] if lines else ""


def _attempt_error(attempt: Any) -> str:
    reason = getattr(attempt.error_reason, "value", str(attempt.error_reason))
    tail = _trace_tail(attempt.error_trace)
    return f"{reason}: {tail}" if tail else str(reason)


def _resolve_address(edge: Edge, timeout_s: float) -> str:
    """The IP address to connect to: ``edge.address``, else the host name resolved here.

    sslyze is given an IP address so that ``localhost`` cannot silently become ::1,
    and so that every probe of one run reaches the same address. IPv4 is preferred.
    """
    address = edge.connect_address
    try:
        ipaddress.ip_address(address)
        return address
    except ValueError:
        pass
    previous = socket.getdefaulttimeout()
    try:
        socket.setdefaulttimeout(timeout_s)
        infos = socket.getaddrinfo(address, edge.https_port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise ProbeError(f"TLS scan: cannot resolve {address!r} ({exc.strerror or exc}); "
                         "set edge.address in the profile") from None
    finally:
        socket.setdefaulttimeout(previous)
    resolved = sorted({str(info[4][0]) for info in infos},
                      key=lambda ip: ipaddress.ip_address(ip).version)
    if not resolved:
        raise ProbeError(f"TLS scan: {address!r} resolves to no address")
    return resolved[0]


def describe_key(cert: x509.Certificate) -> tuple[str, int | None, str | None]:
    """The key type, size in bits and curve name of a certificate's public key."""
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA", key.key_size, None
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "EC", key.curve.key_size, key.curve.name
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519", 256, None
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448", 456, None
    if isinstance(key, dsa.DSAPublicKey):
        return "DSA", key.key_size, None
    return type(key).__name__, None, None


def _verified_chain(tls: ssl.SSLSocket) -> tuple[x509.Certificate, ...]:
    """The chain OpenSSL verified on ``tls``, leaf first.

    Python 3.13 makes ``get_verified_chain`` public; 3.10 to 3.12 have it on the
    private ``_sslobj`` only. Its certificates' ``public_bytes()`` are PEM.
    """
    holder = tls if hasattr(tls, "get_verified_chain") else getattr(tls, "_sslobj", None)
    built: list[Any] = list(getattr(holder, "get_verified_chain", list)() or [])
    return tuple(x509.load_pem_x509_certificate(str(c.public_bytes()).encode("ascii")) for c in built)


def validate_like_a_client(address: str, port: int, host: str, store_pem: str, timeout_s: float
                           ) -> ClientValidation:
    """One handshake in which OpenSSL validates the server's chain against ``store_pem``.

    This is the judgement ``openssl s_client -verify_return_error``, testssl.sh and
    browsers make: a chain from what the server sent to an anchor, for server
    authentication. Host name and validity times are left to the check (judged from the
    certificate's fields at the check's time), so one handshake reports the chain alone.
    Old protocol versions and weak keys are allowed here so that the chain is still
    judged on an edge that the version and key checks fail.
    """
    verifier = ssl.OPENSSL_VERSION.split(" ")[:2]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    context.verify_flags |= _X509_V_FLAG_NO_CHECK_TIME
    context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    try:
        context.load_verify_locations(cadata=store_pem)
    except ssl.SSLError as exc:
        raise ProbeError(f"cannot load the trust store: {exc.reason or exc.__class__.__name__}") from None
    name = " ".join(verifier)
    try:
        with socket.create_connection((address, port), timeout=timeout_s) as raw:
            raw.settimeout(timeout_s)
            with context.wrap_socket(raw, server_hostname=host) as tls:
                chain = _verified_chain(tls)
    except ssl.SSLCertVerificationError as exc:
        return ClientValidation(False, exc.verify_message or "no reason given", (), name)
    except TimeoutError:
        return ClientValidation(None, f"the validation handshake got no answer within {timeout_s:g}s",
                                (), name)
    except (ssl.SSLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc.__class__.__name__
        return ClientValidation(None, f"the validation handshake failed ({reason})", (), name)
    return ClientValidation(True, None, chain, name)


def observe_certificate(chain: list[x509.Certificate], *, sni_host: str,
                        path_results: list[Any], client: ClientValidation,
                        judged_store: str = SUPPLIED_CA_STORE) -> CertificateObservation:
    """Reduce a received chain, the client-like validation and sslyze's strict path
    validation results to an observation.

    ``judged_store`` names the one trust store judged (the supplied anchor, or the
    public store when the profile names none); ``client`` is OpenSSL's judgement
    against it, which decides; sslyze's result for that store is recorded only.
    """
    leaf = chain[0]
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns_names = tuple(san.get_values_for_type(x509.DNSName))
        ip_addresses = tuple(str(ip) for ip in san.get_values_for_type(x509.IPAddress))
    except x509.ExtensionNotFound:
        dns_names, ip_addresses = (), ()
    key_type, key_bits, curve = describe_key(leaf)
    strict = next((r for r in path_results if r.trust_store.name == judged_store), None)
    verified = list(client.chain)
    if verified and verified[0].fingerprint(hashes.SHA256()) != leaf.fingerprint(hashes.SHA256()):
        # Another certificate answered the validation handshake (several servers behind one
        # name, or a renewal in between): its judgement is not about the leaf observed here.
        client = ClientValidation(None, "the validation handshake was answered with another certificate "
                                  f"({verified[0].subject.rfc4514_string()}) than the scan's", (),
                                  client.verifier)
        verified = []
    return CertificateObservation(
        subject=leaf.subject.rfc4514_string(),
        issuer=leaf.issuer.rfc4514_string(),
        serial=format(leaf.serial_number, "x"),
        sha256_fingerprint=leaf.fingerprint(hashes.SHA256()).hex(),
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
        dns_names=dns_names,
        ip_addresses=ip_addresses,
        key_type=key_type,
        key_bits=key_bits,
        curve=curve,
        chain_subjects=tuple(c.subject.rfc4514_string() for c in chain),
        anchor_store=judged_store if client.accepted is not None else None,
        chains_to_anchor=client.accepted,
        validation_error=client.reason,
        verified_chain_subjects=tuple(c.subject.rfc4514_string() for c in verified),
        sni_host=sni_host,
        other_stores=tuple((r.trust_store.name, bool(r.was_validation_successful))
                           for r in path_results if r.trust_store.name != judged_store),
        issuers=tuple(ChainCertificate(c.subject.rfc4514_string(), c.not_valid_before_utc,
                                       c.not_valid_after_utc) for c in verified[1:]),
        validated_by=client.verifier,
        strict_verifier_accepts=(bool(strict.was_validation_successful) if strict is not None else None),
        # The chain a client built when there is one (it includes the anchor), else what was sent.
        lint_findings=lint_chain(verified or chain),
    )


def preflight_tls(address: str, port: int, host: str, timeout_s: float,
                  request_s: float | None = None) -> None:
    """Fail fast when the edge is closed, never answers a TLS ClientHello, or trickles.

    sslyze retries its connectivity test with several TLS versions, so a listener
    that accepts TCP but never speaks would hold it for several timeouts. One
    handshake of our own, bounded as a whole by ``timeout_s`` (CPython gives a
    handshake one deadline over all its reads), tells those cases apart first.
    A handshake that the server *refuses* (an alert, e.g. for an old-only server)
    is not an error here: sslyze, with its own OpenSSL, will find what it accepts.

    With ``request_s``, the same connection then asks ``GET /`` as sslyze's HTTP
    headers command will, and the head of the answer must arrive within
    ``request_s`` as a whole: sslyze bounds each read only, so an edge that
    trickles its answer would hold the scan for as long as it keeps sending.

    Raises:
        ProbeError: connection refused, unreachable, no answer in time, or an
            answer to ``GET /`` begun and not finished within ``request_s``.
    """
    where = f"{host} at {address}:{port}"
    peer_address = f"{address}:{port}"
    # Only an overrun of an exchange the scan repeats refuses it: its handshake, or GET / when
    # sslyze will ask it (a slow answer on another sampled path is not one of them).
    asked = (TLS_HANDSHAKE, http_get("/")) if request_s is not None else (TLS_HANDSHAKE,)
    try:
        RUN_TRICKLERS.refuse(peer_address, *asked)
    except PeerKnownToTrickle as known:
        raise ProbeError(f"TLS scan of {where}: {known}") from None
    try:
        raw = socket.create_connection((address, port), timeout=timeout_s)
    except TimeoutError:
        raise ProbeError(f"TLS scan of {where}: TCP connect timed out after {timeout_s:g}s") from None
    except OSError as exc:
        raise ProbeError(f"TLS scan of {where}: cannot connect ({exc.strerror or exc})") from None
    # No verification: this handshake only asks "does anything speak TLS here?";
    # the certificate is judged from sslyze's validation against the trust anchor.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    peer = f"the edge {address}:{port}"
    handshake = Exchange(peer, Deadline(timeout_s, "timeouts.connect_s"), awaited="its TLS handshake")
    try:
        tls = TlsWithin(raw, context, host, handshake)
        tls.handshake()
        if request_s is not None:
            # Silence, a reset or a close are left to sslyze's HTTP headers command to record;
            # only an answer begun and not finished by the deadline is an error here.
            tls.exchange = Exchange(peer, Deadline(request_s, "timeouts.request_s"))
            with suppress(ssl.SSLError, ConnectionError):
                tls.http_head(host)
    except ExchangeExpired as expired:
        step_asked = TLS_HANDSHAKE if expired.exchange is handshake else http_get("/")
        RUN_TRICKLERS.remember(peer_address, step_asked, expired.exchange)
        if expired.exchange is not handshake and not expired.exchange.received:
            return
        if expired.exchange is handshake and not handshake.received:
            raise ProbeError(f"TLS scan of {where}: no answer to a TLS ClientHello within "
                             f"{timeout_s:g}s (the port accepts TCP but does not speak TLS)") from None
        step = "" if expired.exchange is handshake else "GET /: "
        raise ProbeError(f"TLS scan of {where}: {step}{expired}") from None
    except (ssl.SSLError, ConnectionError):
        # The server answered (alert, reset after reading the hello): let sslyze decide.
        pass
    except OSError as exc:
        raise ProbeError(f"TLS scan of {where}: {exc.strerror or exc}") from None
    finally:
        raw.close()


def scan_tls(edge: Edge, policy: Policy) -> TlsScan:
    """Run one sslyze scan of the edge: every protocol version, the certificate, HSTS.

    The connection goes to ``edge.address`` (or the host name resolved once) while
    SNI and certificate validation use ``edge.host``. sslyze bounds each network wait
    by ``policy.timeouts.connect_s`` with one retry; the scan as a whole runs in a
    child process killed after ``policy.timeouts.command_s`` (sslyze's threads block
    in its own OpenSSL, where nothing in this process can stop them), and the
    preflight's own ``GET /`` ends an edge that trickles within ``timeouts.request_s``.

    Raises:
        ProbeError: the edge cannot be reached or does not complete a TLS handshake,
            trickles its answer, the scan did not finish in time, or the trust anchor
            cannot be read.
    """
    # The anchor is read once: sslyze and the client-like validation judge these bytes. The
    # public store (no anchor) is sslyze's own file, looked up in the child with sslyze.
    store = (SUPPLIED_CA_STORE, trust_anchor_pem(edge.trust_anchor)) if edge.trust_anchor else None
    address = _resolve_address(edge, policy.timeouts.connect_s)
    preflight_tls(address, edge.https_port, edge.host, policy.timeouts.connect_s,
                  policy.timeouts.request_s)
    return cast(TlsScan, run_in_child(scan_tls_here, (edge, policy, address, store),
                                      Deadline(policy.timeouts.command_s, "timeouts.command_s"),
                                      what=f"TLS scan of {edge.host} at {address}:{edge.https_port}"))


def scan_tls_here(edge: Edge, policy: Policy, address: str, store: tuple[str, str] | None) -> TlsScan:
    """The sslyze scan of the edge at ``address`` judged against ``store`` (its name and PEM text;
    None: the public store), reduced, here (scan_tls runs it in a child)."""
    # Import here: sslyze pulls in nassl's OpenSSL, which pure judgements never need.
    from sslyze.__version__ import __version__ as sslyze_version
    from sslyze.plugins.certificate_info.implementation import CertificateInfoExtraArgument
    from sslyze.plugins.scan_commands import ScanCommand
    from sslyze.scanner.models import (
        ScanCommandsExtraArguments,
        ServerConnectivityStatusEnum,
        ServerScanRequest,
        ServerScanStatusEnum,
    )
    from sslyze.scanner.scan_command_attempt import ScanCommandAttemptStatusEnum
    from sslyze.scanner.scanner import Scanner
    from sslyze.server_setting import ServerNetworkConfiguration, ServerNetworkLocation

    extra = ScanCommandsExtraArguments()
    judged_store, store_pem = store or trust_store(edge)
    # sslyze takes a file: the anchor's bytes as read, in a directory only this process reads.
    private = tempfile.TemporaryDirectory(prefix="votriz-anchor-")
    if judged_store == SUPPLIED_CA_STORE:
        copy = Path(private.name, "trust-anchor.pem")
        copy.write_text(store_pem, encoding="utf-8")
        extra = ScanCommandsExtraArguments(certificate_info=CertificateInfoExtraArgument(custom_ca_file=copy))
    commands = {ScanCommand(name) for name in TLS_VERSION_COMMANDS.values()}
    commands |= {ScanCommand.CERTIFICATE_INFO, ScanCommand.HTTP_HEADERS}
    request = ServerScanRequest(
        server_location=ServerNetworkLocation(edge.host, edge.https_port, ip_address=address),
        network_configuration=ServerNetworkConfiguration(
            tls_server_name_indication=edge.host,
            # sslyze takes whole seconds; round up so a short policy timeout is never 0.
            network_timeout=max(1, int(policy.timeouts.connect_s + 0.999)),
            network_max_retries=1,
            http_user_agent="votriz-audit",
        ),
        scan_commands=commands,
        scan_commands_extra_arguments=extra,
    )
    started = time.monotonic()
    scanner = Scanner()
    scanner.queue_scans([request])
    with private:
        results = list(scanner.get_results())
    duration = time.monotonic() - started
    where = f"{edge.host} at {address}:{edge.https_port}"
    if len(results) != 1:
        raise ProbeError(f"TLS scan of {where}: sslyze returned {len(results)} results")
    result = results[0]
    if result.connectivity_status is not ServerConnectivityStatusEnum.COMPLETED:
        raise ProbeError(f"TLS scan of {where}: no TLS connectivity "
                         f"({_trace_tail(result.connectivity_error_trace) or 'unknown reason'})")
    if result.scan_status is not ServerScanStatusEnum.COMPLETED or result.scan_result is None:
        raise ProbeError(f"TLS scan of {where}: the scan did not complete")
    attempts = result.scan_result

    versions = []
    for version, command in TLS_VERSION_COMMANDS.items():
        attempt = getattr(attempts, command)
        if attempt.status is ScanCommandAttemptStatusEnum.COMPLETED and attempt.result is not None:
            suites = tuple(s.cipher_suite.name for s in attempt.result.accepted_cipher_suites)
            versions.append(TlsVersionProbe(version, True, bool(attempt.result.is_tls_version_supported),
                                            suites))
        else:
            versions.append(TlsVersionProbe(version, False, None, error=_attempt_error(attempt)))

    certificate: CertificateObservation | None = None
    certificate_error: str | None = None
    cert_attempt = attempts.certificate_info
    if cert_attempt.status is ScanCommandAttemptStatusEnum.COMPLETED and cert_attempt.result is not None:
        deployments = cert_attempt.result.certificate_deployments
        if deployments:
            deployment = deployments[0]
            client = validate_like_a_client(address, edge.https_port, edge.host, store_pem,
                                            policy.timeouts.connect_s)
            certificate = observe_certificate(
                list(deployment.received_certificate_chain), sni_host=edge.host,
                path_results=list(deployment.path_validation_results), client=client,
                judged_store=judged_store)
        else:
            certificate_error = "the server sent no certificate"
    else:
        certificate_error = _attempt_error(cert_attempt)

    hsts: HstsObservation | None = None
    headers_error: str | None = None
    headers_attempt = attempts.http_headers
    headers_done = headers_attempt.status is ScanCommandAttemptStatusEnum.COMPLETED
    if headers_done and headers_attempt.result is not None:
        if headers_attempt.result.http_error_trace is not None:
            headers_error = _trace_tail(headers_attempt.result.http_error_trace)
        else:
            header = headers_attempt.result.strict_transport_security_header
            hsts = (HstsObservation(True, header.max_age, header.include_subdomains, header.preload)
                    if header is not None else HstsObservation(False))
    else:
        headers_error = _attempt_error(headers_attempt)

    return TlsScan(host=edge.host, address=address, port=edge.https_port, versions=tuple(versions),
                   certificate=certificate, certificate_error=certificate_error, hsts=hsts,
                   http_headers_error=headers_error, duration_s=round(duration, 3),
                   sslyze_version=str(sslyze_version))
