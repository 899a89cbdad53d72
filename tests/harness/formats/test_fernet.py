"""Fernet parser: the official spec vectors, pyca round-trips, and a never-crashes property."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.formats.fernet import (
    FernetFailure,
    FernetKey,
    FernetKeyError,
    FernetRingVerifier,
    FernetTokenError,
    decrypt_fernet_token,
    encrypt_fernet_token,
    fingerprint,
    parse_fernet_token,
    verify_fernet_token,
)

VECTORS = Path(__file__).resolve().parents[3] / "fixtures" / "vectors" / "fernet"


def _load(name: str) -> list[dict]:
    return json.loads((VECTORS / f"{name}.json").read_text())


# The official vectors only describe each invalid token in prose; this maps
# each description to the reason our parser must give.
EXPECTED_REASON = {
    "incorrect mac": FernetFailure.BAD_HMAC,
    "too short": FernetFailure.TOO_SHORT,
    "invalid base64": FernetFailure.NOT_BASE64,
    "payload size not multiple of block size": FernetFailure.BAD_LENGTH,
    "payload padding error": FernetFailure.BAD_PADDING,
    "far-future TS (unacceptable clock skew)": FernetFailure.FUTURE_TIMESTAMP,
    "expired TTL": FernetFailure.EXPIRED,
    "incorrect IV (causes padding error)": FernetFailure.BAD_PADDING,
}


def test_every_invalid_vector_has_an_expected_reason() -> None:
    assert {vector["desc"] for vector in _load("invalid")} == set(EXPECTED_REASON)


@pytest.mark.parametrize("vector", _load("generate"), ids=lambda v: v["src"])
def test_generate_vectors(vector: dict) -> None:
    key = FernetKey.from_text(vector["secret"])
    now = datetime.fromisoformat(vector["now"])
    made = encrypt_fernet_token(vector["src"].encode(), key, now=now, iv=bytes(vector["iv"]))
    assert made == vector["token"]
    parts = parse_fernet_token(vector["token"])
    assert parts.iv == bytes(vector["iv"])
    assert parts.timestamp == int(now.timestamp())


@pytest.mark.parametrize("vector", _load("verify"), ids=lambda v: v["src"])
def test_verify_vectors(vector: dict) -> None:
    key = FernetKey.from_text(vector["secret"], "spec")
    result = decrypt_fernet_token(vector["token"], [key], now=datetime.fromisoformat(vector["now"]),
                                  ttl_s=vector["ttl_sec"])
    assert result.plaintext == vector["src"].encode()
    assert result.verified.key_label == "spec"


@pytest.mark.parametrize("vector", _load("invalid"), ids=lambda v: v["desc"])
def test_invalid_vectors(vector: dict) -> None:
    key = FernetKey.from_text(vector["secret"])
    with pytest.raises(FernetTokenError) as caught:
        decrypt_fernet_token(vector["token"], [key], now=datetime.fromisoformat(vector["now"]),
                             ttl_s=vector["ttl_sec"])
    assert caught.value.reason is EXPECTED_REASON[vector["desc"]]


def test_key_ring_names_the_key_that_verifies() -> None:
    old, new = FernetKey(b"o" * 32, "v1"), FernetKey(b"n" * 32, "v2")
    token = Fernet(new.text()).encrypt(b"x")
    assert verify_fernet_token(token, [old, new]).key_label == "v2"
    with pytest.raises(FernetTokenError) as caught:
        verify_fernet_token(token, [old])
    assert caught.value.reason is FernetFailure.BAD_HMAC


def test_future_timestamp_honours_the_allowed_skew() -> None:
    key = FernetKey(b"k" * 32)
    token = encrypt_fernet_token(b"x", key, now=1_000_200)
    assert verify_fernet_token(token, [key], now=1_000_000, max_clock_skew_s=300).key_index == 0
    with pytest.raises(FernetTokenError) as caught:
        verify_fernet_token(token, [key], now=1_000_000, max_clock_skew_s=60)
    assert caught.value.reason is FernetFailure.FUTURE_TIMESTAMP


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, FernetFailure.MISSING),
        ("", FernetFailure.MISSING),
        (b"", FernetFailure.MISSING),
        (12345, FernetFailure.NOT_TEXT),
        ("plaintext-oauth-token", FernetFailure.NOT_BASE64),
        ("gAAAAAé", FernetFailure.NOT_BASE64),
        (b"\xff\xfe\x00garbage", FernetFailure.NOT_BASE64),
        ("gA+/" * 30, FernetFailure.NOT_BASE64),
        ("====", FernetFailure.NOT_BASE64),
        (base64.urlsafe_b64encode(b"\x81" + b"\0" * 100).decode(), FernetFailure.BAD_VERSION),
        (base64.urlsafe_b64encode(b"\x80" * 40).decode(), FernetFailure.TOO_SHORT),
        ("A" * 4_000_000, FernetFailure.BAD_VERSION),
    ],
)
def test_garbage_is_a_typed_failure(value: object, reason: FernetFailure) -> None:
    with pytest.raises(FernetTokenError) as caught:
        decrypt_fernet_token(value, [FernetKey(b"k" * 32)])
    assert caught.value.reason is reason


def test_unpadded_token_is_refused_like_pyca_does() -> None:
    token = Fernet(Fernet.generate_key()).encrypt(b"hello").decode().rstrip("=")
    with pytest.raises(FernetTokenError) as caught:
        parse_fernet_token(token)
    assert caught.value.reason is FernetFailure.NOT_BASE64


def test_bad_keys_are_refused() -> None:
    with pytest.raises(FernetKeyError):
        FernetKey(b"short")
    with pytest.raises(FernetKeyError):
        FernetKey.from_text("not a key")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=256), st.integers(min_value=0, max_value=2**32))
def test_round_trip_with_pyca(plaintext: bytes, stamp: int) -> None:
    text_key = Fernet.generate_key()
    key = FernetKey.from_text(text_key)
    # Given a token made by pyca, we decrypt it; given one made by us, pyca does.
    theirs = Fernet(text_key).encrypt_at_time(plaintext, stamp)
    assert decrypt_fernet_token(theirs, [key], now=stamp).plaintext == plaintext
    ours = encrypt_fernet_token(plaintext, key, now=stamp)
    assert Fernet(text_key).decrypt_at_time(ours, ttl=10, current_time=stamp) == plaintext


_KEY = FernetKey(b"k" * 32)
_VALID = encrypt_fernet_token(b"hello", _KEY, now=1_000_000)
_B64_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_="


def _mutations() -> st.SearchStrategy[object]:
    flips = st.tuples(st.integers(0, len(_VALID) - 1), st.sampled_from(_B64_CHARS)).map(
        lambda change: _VALID[: change[0]] + change[1] + _VALID[change[0] + 1 :])
    return st.one_of(
        st.none(), st.integers(), st.floats(), st.binary(max_size=512),
        st.text(max_size=512), st.text(alphabet=_B64_CHARS, max_size=512),
        st.binary(max_size=512).map(lambda b: base64.urlsafe_b64encode(b"\x80" + b)),
        flips, st.integers(0, len(_VALID)).map(lambda n: _VALID[:n]),
    )


@settings(max_examples=2000, deadline=None)
@given(_mutations())
def test_never_raises_anything_but_its_own_error(value: object) -> None:
    # The key ring has the right key, so a mutation that survives must decrypt to the original.
    try:
        result = decrypt_fernet_token(value, [_KEY], now=1_000_000)
    except FernetTokenError as error:
        assert isinstance(error.reason, FernetFailure)
    else:
        assert result.plaintext == b"hello"


# --- FernetRingVerifier: verify_fernet_token's answer, for a whole column ---------------------

_OTHER = FernetKey(b"o" * 32, "other")


def _reference(value: object, keys: list[FernetKey], **when: object) -> object:
    """What verify_fernet_token says: (key index, IV, ciphertext) or the failure reason."""
    try:
        verified = verify_fernet_token(value, keys, **when)  # type: ignore[arg-type]
    except FernetTokenError as error:
        return error.reason
    return (verified.key_index, verified.token.iv, verified.token.ciphertext)


def _ring(value: object, keys: list[FernetKey], **when: object) -> object:
    """The ring verifier's answer: accepted in bulk, else its one-by-one reason."""
    verifier = FernetRingVerifier(keys, **when)  # type: ignore[arg-type]
    per_key, fingerprints = [0] * len(keys), bytearray()
    rest = verifier.accept([(7, value)], 1, per_key, fingerprints)
    if not rest:
        # Accepted: exactly one key counted it, and its fingerprint was kept.
        assert sum(per_key) == 1
        index = per_key.index(1)
        parsed = parse_fernet_token(value)
        assert bytes(fingerprints) == fingerprint(parsed.iv, parsed.ciphertext)
        return (index, parsed.iv, parsed.ciphertext)
    assert rest == [(7, value)] and per_key == [0] * len(keys) and not fingerprints
    try:
        return verifier.verify(value)
    except FernetTokenError as error:
        return error.reason


def _column_values() -> st.SearchStrategy[object]:
    valid = [_VALID, encrypt_fernet_token(b"x" * 40, _OTHER, now=999_000)]
    return st.one_of(
        _mutations(),
        st.sampled_from(valid),
        st.sampled_from(valid).map(lambda t: t.encode("ascii")),
        st.sampled_from(valid).map(lambda t: bytearray(t.encode("ascii"))),
        st.sampled_from(valid).map(lambda t: memoryview(t.encode("ascii"))),
        # Valid except for one byte a lax decoder would skip or accept.
        st.tuples(st.sampled_from(valid), st.integers(0, 150),
                  st.sampled_from(["+", "/", "=", " ", "\n", "*", "é", "\x00"])).map(
            lambda t: t[0][: t[1]] + t[2] + t[0][t[1] + 1:]),
        st.tuples(st.sampled_from(valid), st.sampled_from(["=", "==", "===", " ", "\n"])).map(
            lambda t: t[0] + t[1]),
        # Any version-0x80 body with a whole number of blocks: the HMAC decides.
        st.tuples(st.integers(0, 2**64 - 1), st.binary(min_size=16, max_size=16),
                  st.integers(1, 4)).map(
            lambda t: base64.urlsafe_b64encode(b"\x80" + t[0].to_bytes(8, "big") + t[1]
                                               + bytes(16 * t[2]) + bytes(32)).decode()),
    )


@settings(max_examples=3000, deadline=None)
@given(_column_values(), st.sampled_from([[_KEY], [_OTHER, _KEY], [_KEY, _KEY], [_OTHER], []]),
       st.sampled_from([{}, {"ttl_s": 500}, {"ttl_s": 1000}, {"max_clock_skew_s": 0}]))
def test_ring_verifier_answers_as_verify_fernet_token(value: object, keys: list[FernetKey],
                                                      limits: dict) -> None:
    when = {"now": 1_000_000, **limits}
    assert _ring(value, keys, **when) == _reference(value, keys, **when)


@pytest.mark.parametrize("stamp_offset", [-1001, -1000, -999, 0, 299, 300, 301])
def test_ring_verifier_judges_time_boundaries_alike(stamp_offset: int) -> None:
    token = encrypt_fernet_token(b"t", _KEY, now=1_000_000 + stamp_offset)
    for now in (1_000_000, 1_000_000.5, datetime.fromtimestamp(1_000_000)):
        when = {"now": now, "ttl_s": 1000, "max_clock_skew_s": 300}
        assert _ring(token, [_KEY], **when) == _reference(token, [_KEY], **when)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, FernetFailure.MISSING),
        ("", FernetFailure.MISSING),
        (12345, FernetFailure.NOT_TEXT),
        (b"\xff\xfe\x00garbage", FernetFailure.NOT_BASE64),
        ("gAAAAAé", FernetFailure.NOT_BASE64),
        ("gA+/" * 30, FernetFailure.NOT_BASE64),
        (_VALID[:-8], FernetFailure.BAD_LENGTH),
        (_VALID[:-1], FernetFailure.NOT_BASE64),
        (_VALID[:-8] + "AAAA" + _VALID[-4:], FernetFailure.BAD_HMAC),
        (base64.urlsafe_b64encode(b"\x81" + b"\0" * 100).decode(), FernetFailure.BAD_VERSION),
        (base64.urlsafe_b64encode(b"\x80" * 40).decode(), FernetFailure.TOO_SHORT),
        (base64.urlsafe_b64encode(b"\x80" + b"\0" * 80).decode(), FernetFailure.BAD_LENGTH),
        (encrypt_fernet_token(b"t", _KEY, now=2_000_000), FernetFailure.FUTURE_TIMESTAMP),
        ("A" * 4_000_000, FernetFailure.BAD_VERSION),
        (b"gAAAA" + b"\xff" * 1_000_000, FernetFailure.NOT_BASE64),
    ],
)
def test_ring_verifier_names_each_garbage_reason(value: object, reason: FernetFailure) -> None:
    with pytest.raises(FernetTokenError) as caught:
        FernetRingVerifier([_KEY], now=1_000_000).verify(value)
    assert caught.value.reason is reason


def test_ring_verifier_names_the_first_key_that_verifies() -> None:
    token = encrypt_fernet_token(b"x", _KEY, now=1_000_000)
    verifier = FernetRingVerifier([_OTHER, _KEY, _KEY], now=1_000_000)
    index, iv, ciphertext = verifier.verify(token)
    assert index == 1
    assert iv == parse_fernet_token(token).iv
    assert ciphertext == parse_fernet_token(token).ciphertext
    per_key, fingerprints = [0, 0, 0], bytearray()
    assert verifier.accept([(1, token), (2, token.encode()), (3, "x")], 1, per_key,
                           fingerprints) == [(3, "x")]
    assert per_key == [0, 2, 0]
    assert bytes(fingerprints) == fingerprint(iv, ciphertext) * 2


def test_ring_verifier_accepts_a_batch_and_hands_back_the_rest_in_order() -> None:
    good = [encrypt_fernet_token(bytes([i]) * 20, _KEY, now=1_000_000) for i in range(50)]
    rows = [(i, good[i] if i % 7 else ("garbage", None, b"", 3)[i % 4]) for i in range(50)]
    per_key, fingerprints = [0], bytearray()
    rest = FernetRingVerifier([_KEY], now=1_000_000).accept(rows, 1, per_key, fingerprints)
    assert rest == [row for row in rows if row[0] % 7 == 0]
    assert per_key == [50 - len(rest)]
    assert bytes(fingerprints) == b"".join(
        fingerprint(parse_fernet_token(value).iv, parse_fernet_token(value).ciphertext)
        for i, value in rows if i % 7)


def test_hmac_pads_agree_with_the_hmac_module() -> None:
    import hashlib
    import hmac

    from harness.formats.fernet import _hmac_pads

    for key in (b"", b"k" * 16, b"\xff" * 64):
        inner, outer = _hmac_pads(key)
        digest = inner.copy()
        digest.update(b"message")
        final = outer.copy()
        final.update(digest.digest())
        assert final.digest() == hmac.new(key, b"message", hashlib.sha256).digest()
