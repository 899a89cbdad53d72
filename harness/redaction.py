"""Known secrets and their redaction.

Every secret the harness learns (canary passwords, tokens, backup codes, key
values read from the HSM, the PIN, the auditor password) is registered here
the moment it is known. Everything the harness writes passes through
:meth:`KnownSecrets.redact`, and before signing, every output file is searched
for every registered secret in all the encodings it could appear in.

Short secrets cannot be handled like long ones: a 4-byte PIN occurs inside
ordinary text (numbers, dates, identifiers), so replacing it wherever it occurs
would garble the evidence and, worse, reveal it through the context of each
replacement; and a hash of it names it to anyone who tries 10,000 guesses.
So (see :class:`KnownSecrets`): values of 1 to 3 bytes are refused with a
:class:`SecretTooShort` error the check reports as ERROR; values of 4 or 5
bytes are redacted and searched only as whole words (not touching a letter or
digit); and a redaction marker carries a fingerprint only for values long
enough that the fingerprint cannot be reversed by trying every value.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import re
import threading
import urllib.parse
from collections.abc import Iterator

from harness.outcomes import ProbeError


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


class SecretTooShort(ProbeError, ValueError):
    """A secret too short to be kept out of the harness's outputs; the harness will not use it.

    A :class:`ProbeError`, so a check that meets one ends as ERROR with its message.
    """


def _word_pattern(needle: bytes) -> re.Pattern[bytes]:
    """``needle`` where it is a whole word: not preceded or followed by a letter or a digit."""
    return re.compile(rb"(?<![A-Za-z0-9])" + re.escape(needle) + rb"(?![A-Za-z0-9])")


#: A UUID (8-4-4-4-12 hex): its 4-hex groups are whole words, and a 4-digit PIN can be one
#: of them by chance (1 in 4,096 for the version group of each random UUID an export writes).
_UUID = re.compile(rb"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")


def _inside_uuid(data: bytes, start: int, end: int) -> bool:
    """Whether ``data[start:end]`` is part of a UUID (a group of an identifier, not a copy of a secret)."""
    window_start = max(0, start - 36)
    return any(match.start() + window_start <= start and end <= match.end() + window_start
               for match in _UUID.finditer(data[window_start:end + 36]))


def _markers(marker: str, length: int, match: re.Match[str]) -> str:
    """One marker per copy of a secret in a run of copies (a function, so that nothing in
    the marker is read as a group reference)."""
    return marker * (len(match.group(0)) // length)


class KnownSecrets:
    """A thread-safe registry of secret values with a label each.

    Attributes:
        min_length: the shortest value :meth:`add` takes at all (callers skip an
            empty value; anything else they must hand over, short or not).
        refuse_below: values shorter than this (1 to 3 bytes) are refused with
            :class:`SecretTooShort`: as a whole word they still match ordinary text.
        word_below: values shorter than this (4 and 5 bytes) are redacted and
            searched only as whole words, never inside longer words or numbers.
        fingerprint_from: redaction markers name a value by its fingerprint only
            from this length on; a shorter value could be found again from it.
    """

    min_length = 1
    refuse_below = 4
    word_below = 6
    fingerprint_from = 16

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: dict[bytes, str] = {}

    def add(self, value: str | bytes, label: str) -> None:
        """Register a secret under a human label (e.g. ``canary password``).

        Raises:
            ValueError: the value is empty.
            SecretTooShort: the value is 1 to 3 bytes long.
        """
        data = value.encode() if isinstance(value, str) else bytes(value)
        if len(data) < self.min_length:
            raise ValueError(f"refusing to register an empty secret for {label!r}")
        if len(data) < self.refuse_below:
            raise SecretTooShort(
                f"the {label} is only {len(data)} byte(s) long: a secret that short occurs in ordinary "
                f"text, so the harness could neither redact it from its outputs nor search them for it, "
                f"and refuses to use it (give the audit one of at least {self.refuse_below} bytes, "
                f"better {self.fingerprint_from} or more)")
        with self._lock:
            self._secrets.setdefault(data, label)

    def __len__(self) -> int:
        return len(self._secrets)

    def items(self) -> list[tuple[bytes, str]]:
        with self._lock:
            return list(self._secrets.items())

    def short_labels(self) -> list[str]:
        """Labels of the registered secrets that are matched only as whole words (4 or 5 bytes)."""
        return sorted({label for secret, label in self.items() if len(secret) < self.word_below})

    def needles(self) -> list[tuple[bytes, str]]:
        """Every encoded form of every secret that is safe to search for as a substring
        (the secret is at least ``word_below`` bytes), with a label naming the secret
        and the form, longest first. Short secrets are in :meth:`word_needles`."""
        found: dict[bytes, str] = {}
        for secret, label in self.items():
            if len(secret) < self.word_below:
                continue
            for form, encoded in encodings(secret):
                if len(encoded) >= self.word_below:
                    found.setdefault(encoded, f"{label} ({form})")
        return sorted(found.items(), key=lambda item: -len(item[0]))

    def word_needles(self) -> list[tuple[bytes, str]]:
        """Every encoded form of every short secret, searched only as a whole word."""
        found: dict[bytes, str] = {}
        for secret, label in self.items():
            if len(secret) < self.word_below:
                for form, encoded in encodings(secret):
                    found.setdefault(encoded, f"{label} ({form})")
        return sorted(found.items(), key=lambda item: -len(item[0]))

    def _marker(self, secret_label: str, secret: bytes) -> str:
        if len(secret) >= self.fingerprint_from:
            return f"[REDACTED {secret_label} {fingerprint(secret)}]"
        return f"[REDACTED {secret_label}]"

    def _forms(self) -> list[tuple[bytes, str, bytes, bool]]:
        """(encoded form, label, the secret, whole words only) for every form, longest first."""
        forms: dict[bytes, tuple[str, bytes, bool]] = {}
        for secret, label in self.items():
            short = len(secret) < self.word_below
            for form, encoded in encodings(secret):
                if short or len(encoded) >= self.word_below:
                    forms.setdefault(encoded, (f"{label} ({form})", secret, short))
        return sorted(((e, *rest) for e, rest in forms.items()), key=lambda item: -len(item[0]))

    def redact(self, text: str) -> str:
        """Replace every known secret (any encoding) by ``[REDACTED label]``, with the
        secret's fingerprint when it is long enough (``[REDACTED label sha256:…]``)."""
        if not text:
            return text
        # A marker put in place of a short secret starts with "[" and ends with "]", which can
        # make a neighbouring copy of another secret a whole word: pass again until nothing
        # changes. Each pass that changes the text removes at least one occurrence; the bound
        # only guards against a label that holds its own secret.
        forms = self._forms()
        passes = 16 if any(short for *_, short in forms) else 1
        for _ in range(passes):
            redacted = self._redact_once(text, forms)
            if redacted == text:
                break
            text = redacted
        return text

    def _redact_once(self, text: str, forms: list[tuple[bytes, str, bytes, bool]]) -> str:
        for needle, label, secret, short in forms:
            try:
                plain = needle.decode()
            except UnicodeDecodeError:
                continue
            marker = self._marker(label.split(" (")[0], secret)
            if short:
                # A run of copies (``000:000:``) is a whole word as a run; each copy becomes a marker.
                text = re.sub(r"(?<![A-Za-z0-9])(?:" + re.escape(plain) + r")+(?![A-Za-z0-9])",
                              functools.partial(_markers, marker, len(plain)), text)
            elif plain in text:
                text = text.replace(plain, marker)
        return text

    def find_in(self, data: bytes) -> list[tuple[str, int]]:
        """Where known secrets occur in ``data``: (label, offset) pairs; short secrets
        only where they are whole words, and not where they are a group of a UUID."""
        hits = []
        for needle, label in self.needles():
            start = data.find(needle)
            if start >= 0:
                hits.append((label, start))
        for needle, label in self.word_needles():
            match = next((m for m in _word_pattern(needle).finditer(data)
                          if not _inside_uuid(data, m.start(), m.end())), None)
            if match:
                hits.append((label, match.start()))
        return hits
