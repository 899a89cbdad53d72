"""The token-encryption key ring as the HSM holds it, and decryption under it.

The service keeps one HSM object per version of its token-encryption key,
labelled ``<namespace><token_key_prefix><version>``; each value is a raw
32-byte key whose URL-safe base64 is the Fernet key. The harness reads the
values (:mod:`harness.probes.hsm`) and uses them here to prove that stored
tokens are encrypted under the HSM's keys, and under which.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from harness.probes.hsm import KeyValues
from harness.redaction import fingerprint


def token_ring(values: KeyValues, prefix: str) -> list[tuple[int, str, bytes]]:
    """(version, label, value) of every token-encryption key, highest version first."""
    pattern = re.compile(re.escape(prefix) + r"([0-9]+)$")
    ring = []
    for label, value in values.items():
        match = pattern.match(label)
        if match:
            ring.append((int(match.group(1)), label, value))
    return sorted(ring, reverse=True)


def ring_fingerprints(ring: Sequence[tuple[int, str, bytes]]) -> tuple[tuple[int, str, str], ...]:
    """(version, label, fingerprint) of each key of ``ring``: safe for evidence."""
    return tuple((v, label, fingerprint(value)) for v, label, value in ring)


def fernet_of(values: Sequence[bytes]) -> MultiFernet:
    """A MultiFernet over raw 32-byte keys (the Fernet key is their urlsafe base64)."""
    return MultiFernet([Fernet(base64.urlsafe_b64encode(value)) for value in values])


def single_fernet(value: bytes) -> Fernet:
    """The Fernet of one raw 32-byte key."""
    return Fernet(base64.urlsafe_b64encode(value))


def decrypts(fernet: MultiFernet | Fernet, token: str | None) -> bytes | None:
    """The plaintext of ``token`` under ``fernet``; None when it is NULL or does not decrypt."""
    if token is None:
        return None
    try:
        return fernet.decrypt(token.encode())
    except (InvalidToken, ValueError, TypeError, binascii.Error):
        return None
