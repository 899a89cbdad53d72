"""Key material in a data object, by shape: raw bytes, or hex / base64 / base64url / PEM text
(trimmed, ``key=`` prefixed), and look-alikes that are not keys. Crafted values, no token."""

from __future__ import annotations

import base64
import os
import uuid

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given
from hypothesis import strategies as st

from harness.probes.hsm_objects import (
    decoded_key_candidates,
    is_key_shaped,
    key_material_form,
    material_fingerprints,
    value_fingerprints,
)

# Random-looking, fixed: its base64url form holds '-' and '_', so it cannot also read as plain
# base64 (a random key's unpadded base64url lacks both about one time in four).
KEY = bytes.fromhex("2b6ee5bb7acd9bdc7486461d4971f813e63b9943a3f758b1b3407f06a067df6b")
NONCE = os.urandom(32)


def _pem_private_key() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@pytest.mark.parametrize(("value", "form"), [
    (KEY, "32 bytes of random-looking data"),
    (KEY.hex().encode(), "hex text of 32 random-looking bytes (64 bytes)"),
    (KEY.hex().upper().encode() + b"\n", "hex text of 32 random-looking bytes (65 bytes)"),
    (base64.b64encode(KEY), "base64 text of 32 random-looking bytes (44 bytes)"),
    (base64.urlsafe_b64encode(KEY).rstrip(b"="), "base64url text of 32 random-looking bytes (43 bytes)"),
    (b"key=" + KEY.hex().encode(), "hex text of 32 random-looking bytes (68 bytes)"),
    (b"KEY: " + base64.b64encode(KEY) + b"\n", "base64 text of 32 random-looking bytes (50 bytes)"),
    (b'  TOKEN_KEY="' + KEY[:16].hex().encode() + b'"\n', "hex text of 16 random-looking bytes (47 bytes)"),
])
def test_a_key_as_raw_bytes_or_text_is_key_material(value: bytes, form: str) -> None:
    assert key_material_form(value) == form
    assert is_key_shaped(value)


def test_a_pem_private_key_is_key_material() -> None:
    pem = _pem_private_key()
    assert key_material_form(pem) == f"a PEM PRIVATE KEY block ({len(pem)} bytes)"
    # A certificate-like block is not a private key.
    assert key_material_form(pem.replace(b"PRIVATE KEY", b"CERTIFICATE")) is None


@pytest.mark.parametrize("value", [
    # A random UUID, with an id of its own: pytest-xdist's workers must collect the same names.
    pytest.param(str(uuid.uuid4()).encode(), id="uuid4"),
    pytest.param(str(uuid.uuid4()).upper().encode(), id="uuid4-upper"),
    b"votriz/backup/key",                             # a short label
    b"hello",
    b"This is a plain sentence about where the keys are kept.",
    b"ThisIsMyVeryLongIdentifierForTheBackupLabel",   # 43 base64-alphabet characters of words
    b"key=value",
    b"\x00" * 32,                                     # right length, no entropy
    b"A" * 64,
    b"",
])
def test_look_alikes_are_not_key_material(value: bytes) -> None:
    assert key_material_form(value) is None


def test_the_decoded_key_shares_the_keys_fingerprint() -> None:
    # The text forms of a key fingerprint as the key does, so a data object holding the hex of
    # a token key is matched with that key.
    key_prints = set(value_fingerprints(KEY, NONCE))
    for text in (KEY.hex().encode(), base64.b64encode(KEY), b"key=" + KEY.hex().encode()):
        assert key_prints <= set(material_fingerprints(text, NONCE))
    assert not key_prints & set(material_fingerprints(os.urandom(32).hex().encode(), NONCE))


def test_a_long_value_is_not_decoded() -> None:
    assert decoded_key_candidates(b"ab" * 20_000) == ()
    assert key_material_form(b"ab" * 20_000) is None


@given(st.binary(max_size=300))
def test_any_value_is_judged_without_crashing(value: bytes) -> None:
    form = key_material_form(value)
    assert form is None or isinstance(form, str)
    material_fingerprints(value, NONCE)
