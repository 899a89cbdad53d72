"""Fernet parser: the official spec vectors, authentic but badly padded vectors, pyca
round-trips and agreement, and a never-crashes property."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import datetime
from pathlib import Path

import pytest
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
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
    has_fernet_structure,
    parse_fernet_token,
    validate_fernet_token,
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


# --- authentic but badly padded: made by hand with the key, no padder -------------------------


def _sealed(plaintext_blocks: bytes, key: FernetKey, stamp: int, iv: bytes) -> str:
    """A token whose plaintext is ``plaintext_blocks`` as is (whole blocks, no padding added):
    AES-128-CBC by hand, then the HMAC the spec asks for, so it is authentic under ``key``."""
    encryptor = Cipher(algorithms.AES(key.encryption_key), modes.CBC(iv)).encryptor()
    body = (b"\x80" + stamp.to_bytes(8, "big") + iv + encryptor.update(plaintext_blocks)
            + encryptor.finalize())
    return _signed(body, key)


def _signed(body: bytes, key: FernetKey) -> str:
    tag = hmac.new(key.signing_key, body, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(body + tag).decode("ascii")


def _bad_padding_vectors() -> list[dict]:
    return json.loads((VECTORS / "authentic-bad-padding.json").read_text())["vectors"]


@pytest.mark.parametrize("vector", _bad_padding_vectors(), ids=lambda v: v["desc"])
def test_authentic_but_badly_padded_vectors(vector: dict) -> None:
    key = FernetKey.from_text(vector["secret"], "spec")
    now = datetime.fromisoformat(vector["now"])
    # Given the vector's token, remade here from its key, IV and unpadded plaintext
    token = _sealed(bytes.fromhex(vector["plaintext_hex"]), key, vector["timestamp"],
                    bytes(vector["iv"]))
    assert token == vector["token"]
    # Then its HMAC verifies, but pyca refuses it, and so do we, for its padding
    assert verify_fernet_token(token, [key], now=now, ttl_s=vector["ttl_sec"]).key_index == 0
    with pytest.raises(InvalidToken):
        Fernet(vector["secret"]).decrypt_at_time(token, ttl=vector["ttl_sec"],
                                                 current_time=int(now.timestamp()))
    for judge in (validate_fernet_token, decrypt_fernet_token):
        with pytest.raises(FernetTokenError) as caught:
            judge(token, [key], now=now, ttl_s=vector["ttl_sec"])
        assert caught.value.reason is FernetFailure.BAD_PADDING
        assert "authentic" in caught.value.detail
    # And the ring verifier hands it back from the bulk path, naming the same reason
    verifier = FernetRingVerifier([key], now=now, ttl_s=vector["ttl_sec"])
    per_key, fingerprints = [0], bytearray()
    assert verifier.accept([(1, token)], 1, per_key, fingerprints) == [(1, token)]
    assert per_key == [0] and not fingerprints
    with pytest.raises(FernetTokenError) as caught:
        verifier.verify(token)
    assert caught.value.reason is FernetFailure.BAD_PADDING


@pytest.mark.parametrize("size", range(17))
def test_every_correct_padding_length_is_valid(size: int) -> None:
    # A last block ending in n bytes of value n (1 to 16) is valid; 0 is not.
    block = bytes(range(100, 116 - size)) + bytes([size]) * size
    token = _sealed(b"x" * 16 + block, _KEY, 1_000_000, bytes(16))
    if size == 0:
        with pytest.raises(FernetTokenError):
            validate_fernet_token(token, [_KEY], now=1_000_000)
    else:
        assert validate_fernet_token(token, [_KEY], now=1_000_000).key_index == 0
    assert _ring(token, [_KEY], now=1_000_000) == _reference(token, [_KEY], now=1_000_000)


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
        # Validation without the plaintext gives the same reason.
        with pytest.raises(FernetTokenError) as caught:
            validate_fernet_token(value, [_KEY], now=1_000_000)
        assert caught.value.reason is error.reason
    else:
        assert result.plaintext == b"hello"
        assert validate_fernet_token(value, [_KEY], now=1_000_000).key_index == 0


# --- FernetRingVerifier: validate_fernet_token's answer, for a whole column -------------------

_OTHER = FernetKey(b"o" * 32, "other")


def _reference(value: object, keys: list[FernetKey], **when: object) -> object:
    """What validate_fernet_token says: (key index, IV, ciphertext) or the failure reason."""
    try:
        verified = validate_fernet_token(value, keys, **when)  # type: ignore[arg-type]
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
        # Authentic under a key of the ring, any plaintext blocks: the padding decides.
        _authentic_any_padding(),
    )


_PADDING_ENDS = [b"\x00", b"\x01", b"\x02\x02", b"\x01\x02", b"\x10" * 16, b"\x11", b"\xff",
                 b"\x03\x03\x03", b"\x02\x03\x03", b"\x10" * 15]


def _authentic_any_padding() -> st.SearchStrategy[str]:
    """Tokens whose HMAC verifies under _KEY or _OTHER, with plaintext blocks ending in a
    valid, broken or random padding."""
    return st.tuples(st.sampled_from([_KEY, _OTHER]), st.integers(0, 3),
                     st.binary(min_size=16, max_size=16), st.binary(min_size=16, max_size=16),
                     st.sampled_from([b"", *_PADDING_ENDS])).map(
        lambda t: _sealed(b"p" * 16 * t[1] + (t[2][:16 - len(t[4])] + t[4]), t[0],
                          999_900, t[3]))


# --- the ring verifier agrees with cryptography's Fernet ---------------------------------------

_PYCA_NOW = 1_000_000


def _tampered(token: str, at: int, flip: int, key: FernetKey | None) -> str:
    """``token`` with one byte of its body XORed with ``flip``; re-signed under ``key`` if given
    (authentic again, its padding now whatever the change made it)."""
    raw = bytearray(base64.urlsafe_b64decode(token))
    raw[at % (len(raw) - (32 if key else 0))] ^= flip
    if key is None:
        return base64.urlsafe_b64encode(bytes(raw)).decode("ascii")
    return _signed(bytes(raw[:-32]), key)


def _pyca_tokens() -> st.SearchStrategy[str]:
    keys = st.sampled_from([_KEY, _OTHER, FernetKey(b"z" * 32)])
    valid = st.tuples(keys, st.binary(max_size=70),
                      st.integers(_PYCA_NOW - 10**6, _PYCA_NOW + 120)).map(
        lambda t: Fernet(t[0].text()).encrypt_at_time(t[1], t[2]).decode("ascii"))
    return st.one_of(
        valid,
        # Tampered and left so (the HMAC fails), or tampered and re-signed (authentic again).
        st.tuples(valid, st.integers(0, 200), st.integers(1, 255),
                  st.sampled_from([None, _KEY, _OTHER])).map(lambda t: _tampered(*t)),
        # A cipher block dropped from the end, re-signed: the new last block's padding decides.
        st.tuples(keys, st.binary(min_size=16, max_size=70)).map(
            lambda t: _signed(base64.urlsafe_b64decode(
                Fernet(t[0].text()).encrypt_at_time(t[1], _PYCA_NOW))[:-48], t[0])),
        _authentic_any_padding(),
    )


@settings(max_examples=1500, deadline=None)
@given(_pyca_tokens(), st.sampled_from([[_KEY], [_OTHER, _KEY], [_OTHER]]))
def test_ring_verifier_agrees_with_pyca_fernet_decrypt(token: str, keys: list[FernetKey]) -> None:
    # Given a valid, tampered or badly padded token, When pyca's MultiFernet decrypts it and the
    # ring verifier judges it (in bulk, else one by one), Then both accept it or both refuse it.
    try:
        MultiFernet([Fernet(key.text()) for key in keys]).decrypt_at_time(
            token, ttl=10**9, current_time=_PYCA_NOW)
        pyca_accepts = True
    except InvalidToken:
        pyca_accepts = False
    ours = _ring(token, keys, now=_PYCA_NOW)
    assert (not isinstance(ours, FernetFailure)) is pyca_accepts, ours
    assert ours == _reference(token, keys, now=_PYCA_NOW)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_authentic_any_padding(), _column_values()), max_size=40),
       st.sampled_from([[_KEY], [_OTHER, _KEY], [_KEY, _OTHER]]))
def test_ring_verifier_judges_a_whole_batch_as_each_cell_alone(values: list[object],
                                                               keys: list[FernetKey]) -> None:
    # Given one batch of valid, garbage and authentic cells with any padding, When the bulk
    # path judges it at once and each row it hands back is judged alone, Then together they say
    # what validate_fernet_token says of each cell; the bulk path hands back every failure, in
    # order, and keeps the fingerprints of what it accepted in row order
    rows = list(enumerate(values))
    verifier = FernetRingVerifier(keys, now=1_000_000)
    per_key, fingerprints = [0] * len(keys), bytearray(b"x" * 16)
    rest = verifier.accept(rows, 1, per_key, fingerprints)
    assert rest == sorted(rest, key=lambda row: row[0])
    handed_back = {row[0] for row in rest}
    accepted = [(at, _reference(value, keys, now=1_000_000)) for at, value in rows
                if at not in handed_back]
    assert all(not isinstance(answer, FernetFailure) for _, answer in accepted)
    for _, value in rest:
        try:
            ours: object = verifier.verify(value)
        except FernetTokenError as error:
            ours = error.reason
        assert ours == _reference(value, keys, now=1_000_000)
    assert per_key == [sum(1 for _, answer in accepted if answer[0] == k)  # type: ignore[index]
                       for k in range(len(keys))]
    assert bytes(fingerprints) == b"x" * 16 + b"".join(
        fingerprint(answer[1], answer[2]) for _, answer in accepted)  # type: ignore[index]


def test_ring_verifier_hands_back_badly_padded_rows_in_order() -> None:
    # Given a batch mixing valid tokens under two keys, garbage and badly padded tokens
    good = [encrypt_fernet_token(bytes([i]) * 20, (_KEY, _OTHER)[i % 2], now=1_000_000)
            for i in range(40)]
    bad = _sealed(b"q" * 31 + b"\x00", _KEY, 1_000_000, bytes(range(16)))
    rows = [(i, bad if i % 5 == 0 else "garbage" if i % 7 == 0 else good[i]) for i in range(40)]
    per_key, fingerprints = [0, 0], bytearray()
    rest = FernetRingVerifier([_KEY, _OTHER], now=1_000_000).accept(rows, 1, per_key,
                                                                     fingerprints)
    # Then the rest comes back in row order, and the fingerprints of the valid ones in row order
    assert rest == [row for row in rows if row[0] % 5 == 0 or row[0] % 7 == 0]
    valid = [value for i, value in rows if i % 5 and i % 7]
    assert sum(per_key) == len(valid)
    assert bytes(fingerprints) == b"".join(
        fingerprint(parse_fernet_token(v).iv, parse_fernet_token(v).ciphertext) for v in valid)


@settings(max_examples=3000, deadline=None)
@given(_column_values(), st.sampled_from([[_KEY], [_OTHER, _KEY], [_KEY, _KEY], [_OTHER], []]),
       st.sampled_from([{}, {"ttl_s": 500}, {"ttl_s": 1000}, {"max_clock_skew_s": 0}]))
def test_ring_verifier_answers_as_validate_fernet_token(value: object, keys: list[FernetKey],
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
    # Named by the reason, not by the value: some values are fresh random tokens, and test ids
    # must be the same in every process that collects them (pytest-xdist workers).
    ids=lambda v: v.value if isinstance(v, FernetFailure) else "cell",
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


def test_has_fernet_structure_sorts_values_by_structure_alone() -> None:
    token = Fernet(Fernet.generate_key()).encrypt(b"x").decode()
    assert has_fernet_structure(token)
    assert not has_fernet_structure(token[:20])
    assert not has_fernet_structure("gAAAAA-not-base64!")
    assert not has_fernet_structure(None)
