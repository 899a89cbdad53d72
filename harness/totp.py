"""Time-based one-time passwords (RFC 6238), as an authenticator app computes them.

The canary account enrols in MFA and then logs in with a code: the auditor
computes that code itself (HMAC-SHA1, six digits, 30-second steps: what
every authenticator and the reference service use), so it needs no OTP library.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
import time

DIGITS = 6
STEP_S = 30


def hotp(key: bytes, counter: int, digits: int = DIGITS) -> str:
    """The HOTP value (RFC 4226) of ``key`` at ``counter``, zero-padded to ``digits``."""
    digest = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    code = struct.unpack(">I", digest[offset:offset + 4])[0] & 0x7FFFFFFF
    return str(code % 10**digits).zfill(digits)


def totp_now(secret_base32: str, now: float | None = None) -> str:
    """The current code for a base32 secret (as shown in an otpauth:// URI, padding optional)."""
    secret = secret_base32.strip().replace(" ", "").upper()
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    moment = time.time() if now is None else now
    return hotp(key, int(moment // STEP_S))
