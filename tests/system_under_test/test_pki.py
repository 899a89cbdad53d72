"""The local PKI: chains, names, lifetimes and key file permissions."""

from __future__ import annotations

import datetime as dt
import ipaddress
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.verification import PolicyBuilder, Store

from system_under_test.common.pki import EXPIRING_LEAF_LIFETIME, build_pki

NOW = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return build_pki(tmp_path_factory.mktemp("pki"), now=NOW)


def _load(path):
    return x509.load_pem_x509_certificate(path.read_bytes())


@pytest.mark.parametrize(("stem", "host"), [("edge", "votriz.test"),
                                            ("fakes", "fakes.votriz.test")])
def test_leaf_chains_to_the_ca_for_its_name_and_loopback(pki, stem, host):
    ca = _load(pki.ca_cert)
    leaf = _load(getattr(pki, f"{stem}_cert"))
    verifier = (PolicyBuilder().store(Store([ca])).time(NOW + dt.timedelta(days=1))
                .build_server_verifier(x509.DNSName(host)))

    chain = verifier.verify(leaf, [])

    assert chain[-1] == ca
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [host]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]


def test_edge_cert_is_also_valid_for_127_0_0_1(pki):
    verifier = (PolicyBuilder().store(Store([_load(pki.ca_cert)])).time(NOW)
                .build_server_verifier(x509.IPAddress(ipaddress.ip_address("127.0.0.1"))))

    verifier.verify(_load(pki.edge_cert), [])


def test_keys_are_p256_and_private(pki):
    for key_file in (pki.ca_key, pki.edge_key, pki.fakes_key):
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    leaf = _load(pki.edge_cert)
    assert isinstance(leaf.public_key(), ec.EllipticCurvePublicKey)
    assert leaf.public_key().curve.name == "secp256r1"


def test_default_edge_lifetime_is_90_days(pki):
    assert _load(pki.edge_cert).not_valid_after_utc == NOW + dt.timedelta(days=90)


def test_expiring_edge_cert_expires_in_two_days(tmp_path):
    expiring = build_pki(tmp_path, edge_lifetime=EXPIRING_LEAF_LIFETIME, now=NOW)

    assert _load(expiring.edge_cert).not_valid_after_utc == NOW + dt.timedelta(days=2)
    # The fakes' certificate is not affected by the edge fault.
    assert _load(expiring.fakes_cert).not_valid_after_utc == NOW + dt.timedelta(days=90)
