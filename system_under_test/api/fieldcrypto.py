"""Field-level encryption of rows (Fernet under the token-encryption ring) and the e-mail index."""

from __future__ import annotations

import hashlib
import hmac
import time

from cryptography.fernet import InvalidToken

from system_under_test.api.keyring import KeyRing

# The token-fixed-iv fault: every Fernet token shares this IV. A constant is
# exactly what the fault is meant to show; it is never used otherwise.
FIXED_IV = bytes(16)


class FieldCipher:
    """Encrypts and decrypts text columns with the process's Fernet ring.

    Attributes:
        fixed_iv: when True (the ``token-fixed-iv`` fault), tokens are made
            with ``FIXED_IV`` instead of a random IV.
    """

    def __init__(self, keyring: KeyRing, *, fixed_iv: bool = False) -> None:
        self._ring = keyring.token_fernet
        self._primary = keyring.primary_token_fernet
        self.fixed_iv = fixed_iv

    def encrypt(self, text: str) -> str:
        """Encrypt ``text`` under the primary key; return the Fernet token as text."""
        data = text.encode("utf-8")
        if self.fixed_iv:
            token = self._primary._encrypt_from_parts(data, int(time.time()), FIXED_IV)
        else:
            token = self._ring.encrypt(data)
        return token.decode("ascii")

    def decrypt(self, token: str) -> str:
        """Decrypt a Fernet token made under any key version of the ring.

        Raises:
            cryptography.fernet.InvalidToken: the token is not one of ours.
        """
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
