"""Strict-profile findings on hand-made chains: plain words, one per departure, none on a full chain."""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from harness.certificate_lint import lint_chain

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
CA_KEY = ec.generate_private_key(ec.SECP256R1())
LEAF_KEY = ec.generate_private_key(ec.SECP256R1())


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def ca(*, ski: bool = True, key_usage: bool = True, basic_critical: bool = True) -> x509.Certificate:
    builder = (x509.CertificateBuilder().subject_name(_name("Test CA")).issuer_name(_name("Test CA"))
               .public_key(CA_KEY.public_key()).serial_number(1)
               .not_valid_before(NOW - dt.timedelta(days=1)).not_valid_after(NOW + dt.timedelta(days=3650))
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=basic_critical))
    if key_usage:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
    if ski:
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(CA_KEY.public_key()),
                                        critical=False)
    return builder.sign(CA_KEY, hashes.SHA256())


def leaf(*, aki: bool = True, ski: bool = True, san: bool = True, eku: bool = True,
         is_ca: bool = False, days: int = 90) -> x509.Certificate:
    builder = (x509.CertificateBuilder().subject_name(_name("votriz.test")).issuer_name(_name("Test CA"))
               .public_key(LEAF_KEY.public_key()).serial_number(2)
               .not_valid_before(NOW).not_valid_after(NOW + dt.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True))
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName("votriz.test")]),
                                        critical=False)
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                                        critical=False)
    if aki:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(CA_KEY.public_key()), critical=False)
    if ski:
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(LEAF_KEY.public_key()),
                                        critical=False)
    return builder.sign(CA_KEY, hashes.SHA256())


def rules(chain: list[x509.Certificate]) -> list[str]:
    return [finding.rule for finding in lint_chain(chain)]


def test_a_chain_with_every_usual_extension_has_no_finding() -> None:
    assert lint_chain([leaf(), ca()]) == ()


def test_leaf_without_authority_key_identifier_is_described_in_plain_words() -> None:
    (finding,) = lint_chain([leaf(aki=False), ca()])
    assert finding.rule == "leaf-no-authority-key-identifier"
    assert finding.certificate == "leaf (CN=votriz.test)"
    assert finding.description == (
        "the certificate has no Authority Key Identifier extension (RFC 5280 §4.2.1.1 requires it "
        "in CA-issued certificates; clients accept it)")
    assert "2.5.29" not in finding.description


def test_each_departure_is_one_finding() -> None:
    assert rules([leaf(ski=False), ca()]) == ["leaf-no-subject-key-identifier"]
    assert rules([leaf(san=False), ca()]) == ["leaf-no-subject-alternative-name"]
    assert rules([leaf(eku=False), ca()]) == ["leaf-no-extended-key-usage"]
    assert rules([leaf(is_ca=True), ca()]) == ["leaf-marked-as-ca"]
    assert rules([leaf(days=825), ca()]) == ["leaf-validity-over-398-days"]
    assert rules([leaf(), ca(ski=False)]) == ["ca-no-subject-key-identifier"]
    assert rules([leaf(), ca(key_usage=False)]) == ["ca-no-key-usage"]
    assert rules([leaf(), ca(basic_critical=False)]) == ["ca-basic-constraints-not-critical"]


def test_every_departure_of_a_certificate_is_listed_missing_extensions_first() -> None:
    # A certificate that departs in several ways gets one finding for each: first the
    # extensions it lacks (in the order of the rules), then what its extensions say wrongly.
    assert rules([leaf(aki=False, san=False, eku=False, is_ca=True, days=825), ca()]) == [
        "leaf-no-authority-key-identifier", "leaf-no-subject-alternative-name",
        "leaf-no-extended-key-usage", "leaf-marked-as-ca", "leaf-validity-over-398-days"]
    assert rules([leaf(), ca(ski=False, key_usage=False, basic_critical=False)]) == [
        "ca-no-subject-key-identifier", "ca-no-key-usage", "ca-basic-constraints-not-critical"]

def test_findings_name_the_certificate_they_are_about() -> None:
    findings = lint_chain([leaf(aki=False), ca(ski=False)])
    assert [f.certificate for f in findings] == ["leaf (CN=votriz.test)", "issuer 1 (CN=Test CA)"]


def test_a_self_signed_leaf_is_not_asked_for_an_authority_key_identifier() -> None:
    self_signed = (x509.CertificateBuilder().subject_name(_name("votriz.test")).issuer_name(_name("votriz.test"))
                   .public_key(LEAF_KEY.public_key()).serial_number(3)
                   .not_valid_before(NOW).not_valid_after(NOW + dt.timedelta(days=90))
                   .add_extension(x509.SubjectAlternativeName([x509.DNSName("votriz.test")]), critical=False)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(LEAF_KEY.public_key()),
                                  critical=False)
                   .sign(LEAF_KEY, hashes.SHA256()))
    assert lint_chain([self_signed]) == ()
