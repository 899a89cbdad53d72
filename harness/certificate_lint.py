"""Strict-profile findings about a certificate chain, in plain words.

Clients (OpenSSL, testssl.sh, browsers) accept many certificates that the RFC 5280
profile or the CA/Browser Forum Baseline Requirements would have issued differently:
a leaf without an Authority Key Identifier is the common case. Those differences are
worth recording, but they are not the promise ("the certificate is valid and renewed"),
so the certificate check records them as observations and never fails on them.
Each finding says what the certificate lacks or carries, which rule asks otherwise,
and whether clients accept it; no library text and no object identifiers.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

# The longest validity the Baseline Requirements allow a server certificate (§6.3.2), in days.
BR_MAX_LEAF_VALIDITY_DAYS = 398


@dataclass(frozen=True)
class LintFinding:
    """One way a certificate departs from the strict profile, which clients still accept.

    Attributes:
        certificate: which certificate: ``leaf`` or ``issuer N`` (1 = the leaf's issuer),
            with its subject.
        rule: a stable short name of the rule (``leaf-no-authority-key-identifier``).
        description: the finding in plain words, with the rule that asks otherwise.
    """

    certificate: str
    rule: str
    description: str


def _extension(cert: x509.Certificate, kind: type[x509.ExtensionType]
               ) -> x509.Extension[x509.ExtensionType] | None:
    try:
        return cert.extensions.get_extension_for_class(kind)
    except x509.ExtensionNotFound:
        return None
    except ValueError:
        # A duplicate or malformed extension: cryptography refuses to parse the list.
        return None


def _extensions_readable(cert: x509.Certificate) -> bool:
    try:
        cert.extensions  # noqa: B018 - parsing is the test
    except ValueError:
        return False
    return True


#: A rule that asks a certificate to carry an extension: (extension, rule, description of its absence).
_Required = tuple[type[x509.ExtensionType], str, str]

#: What a leaf issued by a CA must carry (a self-issued leaf has no issuer key to identify).
_LEAF_AUTHORITY_KEY: _Required = (
    x509.AuthorityKeyIdentifier, "leaf-no-authority-key-identifier",
    "the certificate has no Authority Key Identifier extension (RFC 5280 §4.2.1.1 requires it "
    "in CA-issued certificates; clients accept it)")
#: The extensions every server certificate must carry, in the order findings are listed.
_LEAF_REQUIRED: tuple[_Required, ...] = (
    (x509.SubjectKeyIdentifier, "leaf-no-subject-key-identifier",
     "the certificate has no Subject Key Identifier extension (RFC 5280 §4.2.1.2 recommends it "
     "for end-entity certificates; clients accept it)"),
    (x509.SubjectAlternativeName, "leaf-no-subject-alternative-name",
     "the certificate has no Subject Alternative Name extension (the Baseline Requirements "
     "§7.1.2.7.12 require one; browsers do not read the host name from the common name)"),
    (x509.ExtendedKeyUsage, "leaf-no-extended-key-usage",
     "the certificate has no Extended Key Usage extension (the Baseline Requirements require "
     "server authentication to be named; OpenSSL accepts a certificate without it)"),
)
#: The extensions every CA certificate of the chain must carry.
_ISSUER_REQUIRED: tuple[_Required, ...] = (
    (x509.SubjectKeyIdentifier, "ca-no-subject-key-identifier",
     "the CA certificate has no Subject Key Identifier extension (RFC 5280 §4.2.1.2 requires it "
     "in CA certificates; clients accept it)"),
    (x509.BasicConstraints, "ca-no-basic-constraints",
     "the CA certificate has no basic constraints extension (RFC 5280 §4.2.1.9 requires it, "
     "marked critical, in CA certificates)"),
    (x509.KeyUsage, "ca-no-key-usage",
     "the CA certificate has no Key Usage extension (RFC 5280 §4.2.1.3 requires one naming "
     "certificate signing in CA certificates)"),
)


def _missing(cert: x509.Certificate, where: str, required: tuple[_Required, ...]) -> list[LintFinding]:
    return [LintFinding(where, rule, description) for kind, rule, description in required
            if _extension(cert, kind) is None]


def _leaf_findings(cert: x509.Certificate, where: str) -> list[LintFinding]:
    self_issued = cert.issuer == cert.subject
    found = _missing(cert, where, _LEAF_REQUIRED if self_issued
                     else (_LEAF_AUTHORITY_KEY, *_LEAF_REQUIRED))

    def add(rule: str, description: str) -> None:
        found.append(LintFinding(where, rule, description))

    basic = _extension(cert, x509.BasicConstraints)
    if basic is not None and isinstance(basic.value, x509.BasicConstraints) and basic.value.ca:
        add("leaf-marked-as-ca",
            "the server certificate is marked as a certificate authority (basic constraints "
            "CA true), which the Baseline Requirements forbid for server certificates")
    usage = _extension(cert, x509.ExtendedKeyUsage)
    if (usage is not None and isinstance(usage.value, x509.ExtendedKeyUsage)
            and ExtendedKeyUsageOID.SERVER_AUTH not in usage.value):
        add("leaf-extended-key-usage-without-server-auth",
            "the certificate's Extended Key Usage does not name server authentication")
    validity = (cert.not_valid_after_utc - cert.not_valid_before_utc).days
    if validity > BR_MAX_LEAF_VALIDITY_DAYS:
        add("leaf-validity-over-398-days",
            f"the certificate is valid for {validity} days, more than the {BR_MAX_LEAF_VALIDITY_DAYS} "
            "days the Baseline Requirements allow a server certificate (§6.3.2); browsers may refuse "
            "a publicly trusted one, a private trust anchor is not bound by it")
    return found


def _issuer_findings(cert: x509.Certificate, where: str) -> list[LintFinding]:
    found = _missing(cert, where, _ISSUER_REQUIRED)
    basic = _extension(cert, x509.BasicConstraints)
    if basic is not None and not basic.critical:
        found.append(LintFinding(where, "ca-basic-constraints-not-critical",
                                 "the CA certificate's basic constraints extension is not marked "
                                 "critical (RFC 5280 §4.2.1.9 requires it to be)"))
    return found


def lint_chain(chain: list[x509.Certificate]) -> tuple[LintFinding, ...]:
    """Strict-profile findings for a chain, leaf first (the leaf's issuers after it).

    Findings are observations: they describe what RFC 5280 or the Baseline Requirements
    ask for and the chain does not do, never whether clients trust the chain.
    """
    findings: list[LintFinding] = []
    for index, cert in enumerate(chain):
        where = "leaf" if index == 0 else f"issuer {index}"
        where = f"{where} ({cert.subject.rfc4514_string()})"
        if cert.version is not x509.Version.v3:
            findings.append(LintFinding(where, "not-version-3",
                                        "the certificate is X.509 version 1, which carries no extensions "
                                        "(RFC 5280 §4.1.2.1 expects version 3)"))
            continue
        if not _extensions_readable(cert):
            findings.append(LintFinding(where, "extensions-unreadable",
                                        "the certificate's extensions could not be read as RFC 5280 "
                                        "describes them (a duplicate or malformed extension)"))
            continue
        findings.extend(_leaf_findings(cert, where) if index == 0 else _issuer_findings(cert, where))
    return tuple(findings)
