"""The auditor's TOTP against RFC 6238's own test vectors and against pyotp, the reference service's."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.totp import hotp, totp_now

RFC_KEY = b"12345678901234567890"


@pytest.mark.parametrize(("at", "code"), [(59, "94287082"), (1111111109, "07081804"),
                                          (1234567890, "89005924"), (2000000000, "69279037")])
def test_rfc6238_sha1_vectors(at: int, code: str) -> None:
    assert hotp(RFC_KEY, at // 30, digits=8) == code
    assert totp_now(base64.b32encode(RFC_KEY).decode(), now=at) == code[-6:]


@given(st.binary(min_size=16, max_size=40), st.integers(min_value=0, max_value=2**33))
def test_same_code_as_pyotp_for_any_secret_and_time(key: bytes, at: int) -> None:
    pyotp = pytest.importorskip("pyotp")
    secret = base64.b32encode(key).decode().rstrip("=")
    assert totp_now(secret, now=at) == pyotp.TOTP(secret).at(at)
