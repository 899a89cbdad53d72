"""The trust store the edge's certificate is judged against, read once and handed on as bytes.

The profile's trust anchor (``edge.trust_anchor``) is a file the user names: it
is read with the safe reader (a FIFO, device or directory is refused without
blocking) and its users give OpenSSL the text read
(``SSLContext.load_verify_locations(cadata=...)``), never the path again, so a
file swapped after it was read cannot change what is trusted.
"""

from __future__ import annotations

from pathlib import Path

from harness import safe_files
from harness.outcomes import ProbeError
from harness.profile import Edge

# The name sslyze gives the trust store built from CertificateInfoExtraArgument.custom_ca_file.
SUPPLIED_CA_STORE = "Supplied CA file"
# The built-in store judged when the profile names no trust anchor (a public CA,
# "None means the system trust store"); with an anchor, built-in stores are never judged.
PUBLIC_STORE = "Mozilla"


def trust_anchor_pem(anchor: Path) -> str:
    """The PEM text of the profile's trust anchor, read with the safe reader (a regular file of
    at most 4 MiB). Its users hand OpenSSL this text, never the path again, so a file swapped
    after it was read cannot change what is trusted.

    Raises:
        ProbeError: it is not a regular file, too large, unreadable or not UTF-8.
    """
    try:
        return safe_files.read_text(anchor, "trust anchor", safe_files.Cap.TOML)
    except safe_files.FileRefused as exc:
        raise ProbeError(f"cannot load trust anchor: {exc}") from None


def trust_store(edge: Edge) -> tuple[str, str]:
    """The trust store a client judges the edge against: its name and PEM text.

    The profile's trust anchor (:func:`trust_anchor_pem`), or, when it names none, the
    Mozilla store sslyze ships (the public CAs browsers trust), so that both validations
    judge the same store.
    """
    if edge.trust_anchor is not None:
        return SUPPLIED_CA_STORE, trust_anchor_pem(edge.trust_anchor)
    from sslyze.plugins.certificate_info.trust_stores.trust_store_repository import TrustStoresRepository

    store = TrustStoresRepository.get_default().get_main_store()
    return PUBLIC_STORE, Path(store.path).read_text(encoding="utf-8")  # sslyze's own file
