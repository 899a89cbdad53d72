"""The token-encryption key ring as the HSM holds it, and decryption under it.

The service keeps one HSM object per version of its token-encryption key,
labelled ``<namespace><token_key_prefix><version>``; each value is a raw
32-byte key whose URL-safe base64 is the Fernet key. This is the one reader
of that ring: :func:`token_key_ring` reads it whole from the HSM
(:mod:`harness.probes.hsm`) for the stored-token scan; :func:`token_ring`
orders values already read by version, for the rotation and custody proofs.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from harness.formats.fernet import FernetKey, FernetKeyError
from harness.outcomes import ProbeError
from harness.policy import Policy
from harness.probes import hsm as hsm_probe
from harness.probes.hsm import KeyValues
from harness.profile import TargetProfile
from harness.redaction import KnownSecrets, fingerprint

#: The token-encryption keys' family under the profile's HSM key namespace.
TOKEN_KEY_FAMILY = "token-encryption/"


def token_key_ring(profile: TargetProfile, policy: Policy,
                   known: KnownSecrets) -> tuple[FernetKey, ...]:
    """Every token-encryption key under ``<namespace>token-encryption/``, read whole from the HSM
    (values registered as known secrets).

    Raises:
        ProbeError: the profile has no ``[hsm]``, or the ring cannot be read whole (:func:`fernet_key_ring`).
    """
    if profile.hsm is None:
        raise ProbeError("the profile has no [hsm] section: the token-encryption keys cannot be read")
    prefix = profile.hsm.key_namespace + TOKEN_KEY_FAMILY
    snapshot = hsm_probe.snapshot(profile.hsm, known, read_prefix=prefix,
                                  timeout_s=policy.timeouts.request_s)
    return fernet_key_ring(prefix, snapshot.values)


def fernet_key_ring(prefix: str, values: KeyValues) -> tuple[FernetKey, ...]:
    """The Fernet key ring from the values read under ``prefix``.

    Raises ProbeError (so the check is ERROR) when any key of the ring cannot be
    read: judging with part of the ring would report the cells encrypted under
    the missing key as "not Fernet", a FAIL the system did not earn.
    """
    if values.unreadable:
        unreadable = "; ".join(f"{label!r}: {reason}"
                               for label, reason in sorted(values.unreadable.items()))
        raise ProbeError(f"the token-encryption key ring under {prefix!r} cannot be read whole "
                         f"from the HSM ({unreadable}), so tokens under "
                         f"{'that key' if len(values.unreadable) == 1 else 'those keys'} could "
                         "not be verified")
    keys = []
    for label, value in values.items():
        try:
            keys.append(FernetKey(value, label))
        except FernetKeyError:
            raise ProbeError(f"HSM object {label!r} holds {len(value)} bytes, not a 32-byte "
                             "Fernet key") from None
    if not keys:
        raise ProbeError(f"no token-encryption key under {prefix!r} could be read from the HSM")
    return tuple(keys)


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
