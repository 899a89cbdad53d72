"""The local PKI: a private CA and the two server certificates it signs.

The CA is the profile's trust anchor: the harness verifies the edge against
it, and the API trusts the fakes through it. Keys are EC P-256, written
0600. The edge certificate's lifetime is a parameter so that the
``cert-expiring`` fault (two days left) is only a different argument.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

EDGE_HOST = "votriz.test"
FAKES_HOST = "fakes.votriz.test"
LOOPBACK = "127.0.0.1"

# A leaf lifetime like an ACME certificate's; renewal is what the published page promises.
DEFAULT_LEAF_LIFETIME = dt.timedelta(days=90)
EXPIRING_LEAF_LIFETIME = dt.timedelta(days=2)
CA_LIFETIME = dt.timedelta(days=365)
# Backdating absorbs small clock differences between the machine and a verifier.
BACKDATE = dt.timedelta(hours=1)


@dataclass(frozen=True)
class Pki:
    """The PKI's files under ``STATE/pki``.

    Attributes:
        ca_cert: the CA certificate (PEM), the trust anchor.
        ca_key: the CA's private key (PEM, 0600).
        edge_cert: certificate of the TLS edge (``votriz.test`` + 127.0.0.1).
        edge_key: its private key (0600).
        fakes_cert: certificate of the fakes (``fakes.votriz.test`` + 127.0.0.1).
        fakes_key: its private key (0600).
    """

    ca_cert: Path
    ca_key: Path
    edge_cert: Path
    edge_key: Path
    fakes_cert: Path
    fakes_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Votriz reference service"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    # Created with 0600 from the start, so the key is never briefly world-readable.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.chmod(0o644)


def create_ca(directory: Path, *, now: dt.datetime | None = None
              ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """Create the CA, write ``ca.pem`` and ``ca.key`` into ``directory``, return both."""
    now = now or dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name("Votriz local CA")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=True, crl_sign=True,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_key(directory / "ca.key", key)
    _write_cert(directory / "ca.pem", cert)
    return cert, key


def issue_server_cert(directory: Path, stem: str, *, ca_cert: x509.Certificate,
                      ca_key: ec.EllipticCurvePrivateKey, dns_names: Sequence[str],
                      ip_addresses: Sequence[str], lifetime: dt.timedelta,
                      now: dt.datetime | None = None) -> x509.Certificate:
    """Issue a TLS server certificate; write ``STEM.pem`` and ``STEM.key`` into ``directory``."""
    now = now or dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    alt_names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
    alt_names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(dns_names[0]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + lifetime)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=False, crl_sign=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write_key(directory / f"{stem}.key", key)
    _write_cert(directory / f"{stem}.pem", cert)
    return cert


def build_pki(directory: Path, *, edge_lifetime: dt.timedelta = DEFAULT_LEAF_LIFETIME,
              now: dt.datetime | None = None) -> Pki:
    """Create the CA and both server certificates under ``directory`` (created if needed)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key = create_ca(directory, now=now)
    issue_server_cert(directory, "edge", ca_cert=ca_cert, ca_key=ca_key,
                      dns_names=[EDGE_HOST], ip_addresses=[LOOPBACK],
                      lifetime=edge_lifetime, now=now)
    issue_server_cert(directory, "fakes", ca_cert=ca_cert, ca_key=ca_key,
                      dns_names=[FAKES_HOST], ip_addresses=[LOOPBACK],
                      lifetime=DEFAULT_LEAF_LIFETIME, now=now)
    return pki_paths(directory)


def pki_paths(directory: Path) -> Pki:
    """The file names of a PKI under ``directory`` (whether or not it exists yet)."""
    return Pki(
        ca_cert=directory / "ca.pem", ca_key=directory / "ca.key",
        edge_cert=directory / "edge.pem", edge_key=directory / "edge.key",
        fakes_cert=directory / "fakes.pem", fakes_key=directory / "fakes.key",
    )
