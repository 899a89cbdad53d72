"""Certificates the tests' own TLS servers present: a private CA and the start of a leaf for
a host (+ SAN 127.0.0.1), which each test completes with the extensions it is about."""

from __future__ import annotations

import datetime as dt
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import NameOID


def common_name(name: str) -> x509.Name:
    """An X.509 name holding only ``CN=name``."""
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])


def new_ca(name: str, not_before: dt.datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A self-signed P-256 CA valid from ``not_before`` for ten years from now, as RFC 5280 wants
    one (basic constraints CA critical, keyCertSign + cRLSign, Subject Key Identifier)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    ca = (x509.CertificateBuilder().subject_name(common_name(name)).issuer_name(common_name(name))
          .public_key(key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(not_before).not_valid_after(now + dt.timedelta(days=3650))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                         critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
          .sign(key, hashes.SHA256()))
    return ca, key


def leaf_for(host: str, issuer: x509.Name, public_key: CertificatePublicKeyTypes,
             not_before: dt.datetime, not_after: dt.datetime) -> x509.CertificateBuilder:
    """A leaf certificate for ``host`` (SAN: the name and 127.0.0.1; not a CA), to be completed."""
    return (x509.CertificateBuilder().subject_name(common_name(host)).issuer_name(issuer)
            .public_key(public_key).serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName(host), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True))
