"""Known secrets and their redaction.

Every secret the harness learns (canary passwords, tokens, backup codes, key
values read from the HSM, the PIN, the auditor password) is registered here
the moment it is known. Everything the harness writes passes through
:meth:`KnownSecrets.redact`, and before signing, every output file is searched
for every registered secret in all the encodings it could appear in.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import threading
import urllib.parse
from collections.abc import Iterator


def fingerprint(secret: str | bytes) -> str:
    """A short, non-reversible name for a secret, safe to print (first 12 hex of SHA-256)."""
    data = secret.encode() if isinstance(secret, str) else secret
    return "sha256:" + hashlib.sha256(data).hexdigest()[:12]


def encodings(secret: bytes) -> Iterator[tuple[str, bytes]]:
    """The forms a secret may take in stored bytes: raw, base64 (both alphabets), hex, URL-encoded."""
    yield "raw", secret
    yield "base64", base64.b64encode(secret).rstrip(b"=")
    yield "base64url", base64.urlsafe_b64encode(secret).rstrip(b"=")
    yield "hex", binascii.hexlify(secret)
    yield "HEX", binascii.hexlify(secret).upper()
    quoted = urllib.parse.quote(secret, safe="").encode()
    if quoted != secret:
        yield "urlencoded", quoted


class KnownSecrets:
    """A thread-safe registry of secret values with a label each.

    Attributes:
        min_length: shorter values are refused (they would redact ordinary words).
    """

    min_length = 6

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: dict[bytes, str] = {}

    def add(self, value: str | bytes, label: str) -> None:
        """Register a secret under a human label (e.g. ``canary password``)."""
        data = value.encode() if isinstance(value, str) else bytes(value)
        if len(data) < self.min_length:
            raise ValueError(f"refusing to register a {len(data)}-byte secret for {label!r}")
        with self._lock:
            self._secrets.setdefault(data, label)

    def __len__(self) -> int:
        return len(self._secrets)

    def items(self) -> list[tuple[bytes, str]]:
        with self._lock:
            return list(self._secrets.items())

    def needles(self) -> list[tuple[bytes, str]]:
        """Every encoded form of every secret, with a label naming the secret and the form."""
        found: dict[bytes, str] = {}
        for secret, label in self.items():
            for form, encoded in encodings(secret):
                if len(encoded) >= self.min_length:
                    found.setdefault(encoded, f"{label} ({form})")
        return sorted(found.items(), key=lambda item: -len(item[0]))

    def redact(self, text: str) -> str:
        """Replace every known secret (any encoding) by ``[REDACTED label sha256:…]``."""
        if not text:
            return text
        for needle, label in self.needles():
            try:
                plain = needle.decode()
            except UnicodeDecodeError:
                continue
            if plain in text:
                text = text.replace(plain, f"[REDACTED {label.split(' (')[0]} {fingerprint(needle)}]")
        return text

    def find_in(self, data: bytes) -> list[tuple[str, int]]:
        """Where known secrets occur in ``data``: (label, offset) pairs."""
        hits = []
        for needle, label in self.needles():
            start = data.find(needle)
            if start >= 0:
                hits.append((label, start))
        return hits
