"""Field-level encryption of rows (Fernet under the token-encryption ring) and the e-mail index."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from collections.abc import Sequence

from cryptography.fernet import InvalidToken

from system_under_test.api.keyring import KeyRing

# The token-fixed-iv fault: every Fernet token shares this IV. A constant is
# exactly what the fault is meant to show; it is never used otherwise.
FIXED_IV = bytes(16)


_FERNET_VERSION = b"\x80"
_HEADER = 1 + 8 + 16  # version, timestamp, IV
_MAC = 32


class PycryptodomeFernet:
    """Fernet (spec version 0x80) made with pycryptodomex's AES-CBC and HMAC-SHA256.

    The ``fernet-other-library`` fault: the same token format as cryptography's
    MultiFernet under the same keys (every token either makes, the other reads),
    from another implementation. pycryptodomex is imported only when this class
    is used, so a service without the fault never loads it.

    Attributes:
        fixed_iv: make tokens with ``FIXED_IV`` (the ``token-fixed-iv`` fault too).
    """

    def __init__(self, raw_keys: Sequence[bytes], *, fixed_iv: bool = False) -> None:
        # Imported here on purpose: the clean service must not load this library at all.
        from Cryptodome.Cipher import AES
        from Cryptodome.Hash import HMAC, SHA256
        from Cryptodome.Util.Padding import pad, unpad

        self._aes, self._hmac, self._sha256 = AES, HMAC, SHA256
        self._pad, self._unpad = pad, unpad
        # A Fernet key's first 16 bytes sign, its last 16 encrypt; the first key encrypts.
        self._keys = [(raw[:16], raw[16:]) for raw in raw_keys]
        self.fixed_iv = fixed_iv

    def encrypt(self, data: bytes) -> bytes:
        signing, encryption = self._keys[0]
        iv = FIXED_IV if self.fixed_iv else os.urandom(16)
        body = self._aes.new(encryption, self._aes.MODE_CBC, iv).encrypt(self._pad(data, 16))
        signed = _FERNET_VERSION + int(time.time()).to_bytes(8, "big") + iv + body
        mac = self._hmac.new(signing, signed, self._sha256).digest()
        return base64.urlsafe_b64encode(signed + mac)

    def decrypt(self, token: bytes) -> bytes:
        """The plaintext of a token made under any of the keys.

        Raises:
            cryptography.fernet.InvalidToken: not a Fernet token under these keys.
        """
        try:
            raw = base64.urlsafe_b64decode(token)
        except (ValueError, TypeError):
            raise InvalidToken from None
        if len(raw) < _HEADER + 16 + _MAC or raw[:1] != _FERNET_VERSION:
            raise InvalidToken
        signed, mac = raw[:-_MAC], raw[-_MAC:]
        for signing, encryption in self._keys:
            try:
                self._hmac.new(signing, signed, self._sha256).verify(mac)
            except ValueError:
                continue
            cipher = self._aes.new(encryption, self._aes.MODE_CBC, signed[9:_HEADER])
            try:
                return bytes(self._unpad(cipher.decrypt(signed[_HEADER:]), 16))
            except ValueError:
                raise InvalidToken from None
        raise InvalidToken


class FieldCipher:
    """Encrypts and decrypts text columns with the process's Fernet ring.

    Attributes:
        fixed_iv: when True (the ``token-fixed-iv`` fault), tokens are made
            with ``FIXED_IV`` instead of a random IV.
        other_library: when True (the ``fernet-other-library`` fault), tokens are
            made and read by :class:`PycryptodomeFernet` instead of cryptography.
    """

    def __init__(self, keyring: KeyRing, *, fixed_iv: bool = False,
                 other_library: bool = False) -> None:
        self._ring = keyring.token_fernet
        self._primary = keyring.primary_token_fernet
        self.fixed_iv = fixed_iv
        self.other_library = other_library
        self._other: PycryptodomeFernet | None = None
        if other_library:
            primary = keyring.primary_token_version
            order = [primary, *sorted((v for v in keyring.token_keys if v != primary), reverse=True)]
            self._other = PycryptodomeFernet([keyring.token_keys[v] for v in order],
                                             fixed_iv=fixed_iv)

    def encrypt(self, text: str) -> str:
        """Encrypt ``text`` under the primary key; return the Fernet token as text."""
        data = text.encode("utf-8")
        if self._other is not None:
            token = self._other.encrypt(data)
        elif self.fixed_iv:
            token = self._primary._encrypt_from_parts(data, int(time.time()), FIXED_IV)
        else:
            token = self._ring.encrypt(data)
        return token.decode("ascii")

    def decrypt(self, token: str) -> str:
        """Decrypt a Fernet token made under any key version of the ring.

        Raises:
            cryptography.fernet.InvalidToken: the token is not one of ours.
        """
        if self._other is not None:
            return self._other.decrypt(token.encode("ascii")).decode("utf-8")
        return self._ring.decrypt(token.encode("ascii")).decode("utf-8")

    def decrypt_or_raw(self, value: str) -> str:
        """Decrypt ``value``, or return it unchanged if it is not a Fernet token.

        Only used where the ``token-plaintext`` fault may have stored raw values.
        """
        try:
            return self.decrypt(value)
        except (InvalidToken, UnicodeError):
            return value


def email_index(key: bytes, email: str) -> str:
    """Hex HMAC-SHA256 of the lower-cased e-mail: a lookup key that reveals nothing."""
    return hmac.new(key, email.strip().lower().encode("utf-8"), hashlib.sha256).hexdigest()
