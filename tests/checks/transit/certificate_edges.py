"""Test edges for the certificate verdict: ``openssl s_server`` variants on loopback ports.

Each edge has its own CA and leaf, made with ``cryptography``, and speaks TLS 1.3 only.
The variants are the certificates real servers send and clients (OpenSSL, testssl.sh,
browsers) judge: a leaf with every usual extension, one without an Authority Key
Identifier, one without a Subject Key Identifier, an expired one, one for another host
name, a self-signed one that does not chain to the anchor, and one expiring in two days.
Every ``openssl`` process started here is stopped by its own pid at teardown.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from private_ca import common_name, leaf_for, new_ca

from harness.profile import Edge
from system_under_test.local.processes import free_port, tcp_accepts, wait_until

HOST = "votriz.test"


@dataclass(frozen=True)
class EdgeVariant:
    """How one test edge's leaf differs from a leaf with every usual extension.

    Attributes:
        name: the variant's id in test names.
        aki, ski: whether the leaf carries an Authority / Subject Key Identifier.
        host: the DNS name in the leaf's subject alternative name.
        not_before, not_after: the leaf's validity window, relative to now.
        self_signed: the leaf signs itself instead of the edge's CA.
        clients_accept: whether OpenSSL and testssl.sh accept the edge (the expected side).
    """

    name: str
    clients_accept: bool
    aki: bool = True
    ski: bool = True
    host: str = HOST
    not_before: dt.timedelta = dt.timedelta(days=-10)
    not_after: dt.timedelta = dt.timedelta(days=80)
    self_signed: bool = False


VARIANTS = (
    EdgeVariant("everything", clients_accept=True),
    EdgeVariant("no-aki", clients_accept=True, aki=False),
    EdgeVariant("no-ski", clients_accept=True, ski=False),
    EdgeVariant("expired", clients_accept=False, not_before=dt.timedelta(days=-100),
                not_after=dt.timedelta(days=-1)),
    EdgeVariant("wrong-host", clients_accept=False, host="other.test"),
    EdgeVariant("self-signed", clients_accept=False, self_signed=True),
    EdgeVariant("expires-in-2-days", clients_accept=False, not_before=dt.timedelta(days=-60),
                not_after=dt.timedelta(days=2)),
)


@dataclass(frozen=True)
class RunningEdge:
    """One running ``openssl s_server`` test edge.

    Attributes:
        variant: what its leaf is.
        port: its TLS port on 127.0.0.1.
        ca_pem: its CA certificate (the profile's trust anchor).
        pid: the ``openssl`` process id (ours to stop).
    """

    variant: EdgeVariant
    port: int
    ca_pem: Path
    pid: int

    def edge(self) -> Edge:
        return Edge.model_validate({"host": HOST, "address": "127.0.0.1", "https_port": self.port, "http_port": None,
                                    "trust_anchor": self.ca_pem})


def write_edge_pki(directory: Path, variant: EdgeVariant) -> tuple[Path, Path, Path]:
    """Write the variant's CA, leaf and leaf key; return their paths (ca, cert, key)."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca, ca_key = new_ca(f"votriz-audit edge CA {variant.name}", now - dt.timedelta(days=365))
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    builder = (leaf_for(variant.host, common_name(variant.host) if variant.self_signed else ca.subject,
                        leaf_key.public_key(), now + variant.not_before, now + variant.not_after)
               .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                              critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False))
    signer = leaf_key if variant.self_signed else ca_key
    if variant.aki:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False)
    if variant.ski:
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()),
                                        critical=False)
    leaf = builder.sign(signer, hashes.SHA256())
    ca_pem, cert_pem, key_pem = directory / "ca.pem", directory / "edge.pem", directory / "edge.key"
    ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_pem.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(leaf_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    key_pem.chmod(0o600)
    return ca_pem, cert_pem, key_pem


@pytest.fixture(scope="module")
def certificate_edges(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, RunningEdge]]:
    """Every variant's ``openssl s_server`` edge (TLS 1.3 only, answering HTTP with ``-www``), by name."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    root = tmp_path_factory.mktemp("certificate-edges")
    processes: list[subprocess.Popen[bytes]] = []
    edges: dict[str, RunningEdge] = {}
    try:
        for variant in VARIANTS:
            ca_pem, cert_pem, key_pem = write_edge_pki(root / variant.name, variant)
            port = free_port()
            process = subprocess.Popen(
                [openssl, "s_server", "-quiet", "-www", "-tls1_3", "-accept", f"127.0.0.1:{port}",
                 "-cert", str(cert_pem), "-key", str(key_pem)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            processes.append(process)
            wait_until(partial(tcp_accepts, port), timeout_s=10.0, what=f"openssl s_server on {port}",
                       pid=process.pid)
            edges[variant.name] = RunningEdge(variant, port, ca_pem, process.pid)
        yield edges
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
