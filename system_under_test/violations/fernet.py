"""Violations of "OAuth tokens are Fernet-encrypted per row": an authentic token that is not Fernet.

An operator who holds the token-encryption key (read from the HSM with the user
PIN, as :meth:`RunningStack.hsm_session` opens it) writes one existing channel's
refresh token as a tool that is not a correct Fernet implementation would: the
version byte, a timestamp, a random IV, AES-128-CBC of whole blocks with no
PKCS#7 padding, and the HMAC-SHA256 the spec asks for. Its structure and HMAC
are those of a valid token under the current key; only decrypting it, or
checking its padding, shows that no Fernet library will ever read it back.

The token is made here with ``cryptography``'s primitives, not with the
harness's Fernet code, so the audit's verifier is tested against an
independent maker.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time

from system_under_test.violations import Violation
from system_under_test.violations.hsm import current_token_key
from system_under_test.violations.stack import RunningStack, StackError

_VERSION = b"\x80"
_BLOCK = 16


def authentic_unpadded_token(raw_key: bytes, plaintext_blocks: bytes, *,
                             stamp: int | None = None, iv: bytes | None = None) -> str:
    """A Fernet-shaped token over ``plaintext_blocks`` as is (no padding added), signed with
    ``raw_key``'s first 16 bytes and encrypted with its last 16, as the spec lays them out.

    Raises:
        ValueError: the key is not 32 bytes, or the plaintext is not whole AES blocks.
    """
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    if len(raw_key) != 32:
        raise ValueError("a Fernet key is 32 bytes")
    if not plaintext_blocks or len(plaintext_blocks) % _BLOCK:
        raise ValueError("the plaintext must be whole 16-byte blocks (it is not padded)")
    iv = os.urandom(_BLOCK) if iv is None else iv
    stamp = int(time.time()) if stamp is None else stamp
    encryptor = Cipher(algorithms.AES(raw_key[16:]), modes.CBC(iv)).encryptor()
    body = (_VERSION + stamp.to_bytes(8, "big") + iv + encryptor.update(plaintext_blocks)
            + encryptor.finalize())
    tag = hmac.new(raw_key[:16], body, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(body + tag).decode("ascii")


def refresh_token_badly_padded(stack: RunningStack) -> None:
    """The oldest channel's ``refresh_token_enc`` becomes an authentic token with no padding.

    Its plaintext is 32 URL-safe characters (two blocks): the last byte is a
    character (0x2d or more), never a PKCS#7 padding length (1 to 16).
    """
    with stack.hsm_session() as session:
        _, raw_key = current_token_key(session)
    token = authentic_unpadded_token(raw_key, secrets.token_urlsafe(24).encode("ascii"))
    rows = stack.sql("UPDATE channels SET refresh_token_enc = %s "
                     "WHERE id = (SELECT min(id) FROM channels) RETURNING id", (token,))
    if not rows:
        raise StackError("no channel row to change: the stack holds none")


VIOLATIONS = (
    Violation("row-token-bad-padding", "one existing channel's refresh_token_enc is overwritten "
              "by SQL with a token whose HMAC verifies under the current token key (read from "
              "the HSM) but whose plaintext has no PKCS#7 padding", refresh_token_badly_padded),
)
