"""bcrypt hash parser and classifier: known forms, real hashes, and a never-crashes property."""

from __future__ import annotations

import bcrypt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.formats import fernet_engine
from harness.formats.bcrypt_hash import (
    BCRYPT_ALPHABET,
    BcryptHashError,
    HashMatch,
    HashScheme,
    bcrypt_check,
    bcrypt_cost_histogram,
    bcrypt_lines_costs,
    classify_stored_hash,
    lines_classifier,
    match_codes_to_rows,
    parse_bcrypt_hash,
)

# The OpenBSD test hash of "U*U" at cost 5, from the bcrypt reference tests.
KNOWN = "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW"


def test_parses_a_known_hash() -> None:
    parsed = parse_bcrypt_hash(KNOWN)
    assert (parsed.variant, parsed.cost, parsed.salt) == ("2a", 5, "CCCCCCCCCCCCCCCCCCCCC.")
    assert parsed.text() == KNOWN
    assert bcrypt_check("U*U", KNOWN) is HashMatch.MATCH
    assert bcrypt_check("U*V", KNOWN) is HashMatch.NO_MATCH


@pytest.mark.parametrize("variant", ["2a", "2b", "2y"])
def test_variants(variant: str) -> None:
    assert parse_bcrypt_hash(KNOWN.replace("$2a$", f"${variant}$")).variant == variant


@pytest.mark.parametrize(
    ("value", "scheme"),
    [
        (None, HashScheme.MISSING),
        ("", HashScheme.MISSING),
        (42, HashScheme.NOT_TEXT),
        (b"\xff\xfe", HashScheme.NOT_TEXT),
        ("$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA", HashScheme.ARGON2),
        ("$1$saltsalt$qjXMvbEw8oaL.CzflDugX/", HashScheme.MD5_CRYPT),
        ("$5$rounds=5000$salt$abc", HashScheme.SHA256_CRYPT),
        ("$6$saltsalt$" + "a" * 86, HashScheme.SHA512_CRYPT),
        ("pbkdf2_sha256$600000$salt$hash=", HashScheme.PBKDF2),
        ("$y$j9T$salt$hash", HashScheme.YESCRYPT),
        ("5f4dcc3b5aa765d61d8327deb882cf99", HashScheme.UNSALTED_DIGEST),
        ("correct horse battery staple", HashScheme.PLAINTEXT_LIKE),
        ("$2b$12$tooshort", HashScheme.MALFORMED_BCRYPT),
        ("$2x$12$" + "a" * 53, HashScheme.MALFORMED_BCRYPT),
        ("$2b$03$" + "a" * 53, HashScheme.MALFORMED_BCRYPT),
        ("$2b$12$" + "a" * 52 + "+", HashScheme.MALFORMED_BCRYPT),
        ("$sha1$1$salt$x", HashScheme.OTHER_CRYPT),
    ],
)
def test_classifies_what_is_not_bcrypt(value: object, scheme: HashScheme) -> None:
    assert classify_stored_hash(value).scheme is scheme
    with pytest.raises(BcryptHashError) as caught:
        parse_bcrypt_hash(value)
    assert caught.value.scheme is scheme
    assert bcrypt_check("anything", value) is HashMatch.NOT_BCRYPT


def test_secret_over_72_bytes_is_a_typed_answer() -> None:
    assert bcrypt_check(b"x" * 73, KNOWN) is HashMatch.SECRET_TOO_LONG


@settings(max_examples=40, deadline=None)
@given(st.binary(min_size=0, max_size=72), st.integers(min_value=4, max_value=5),
       st.sampled_from([b"2a", b"2b"]))
def test_real_hashes_round_trip(password: bytes, cost: int, prefix: bytes) -> None:
    hashed = bcrypt.hashpw(password, bcrypt.gensalt(cost, prefix)).decode()
    parsed = parse_bcrypt_hash(hashed)
    assert parsed.cost == cost and parsed.text() == hashed
    assert classify_stored_hash(hashed).cost == cost


@settings(max_examples=2000, deadline=None)
@given(st.one_of(
    st.none(), st.integers(), st.binary(max_size=200), st.text(max_size=200),
    st.text(alphabet=BCRYPT_ALPHABET + "$0123456789ayb", max_size=80).map(lambda t: "$2" + t),
))
def test_never_raises_anything_but_its_own_error(value: object) -> None:
    kind = classify_stored_hash(value)
    try:
        parsed = parse_bcrypt_hash(value)
    except BcryptHashError as error:
        assert error.scheme is kind.scheme is not HashScheme.BCRYPT
    else:
        assert kind.scheme is HashScheme.BCRYPT and kind.cost == parsed.cost


# --- bcrypt_cost_histogram: a whole batch at once, or "classify each" ---------------------------

_SALTED = "CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW"


def _cell() -> st.SearchStrategy[object]:
    return st.one_of(
        st.sampled_from(["$2a$", "$2b$", "$2y$"]).flatmap(
            lambda prefix: st.sampled_from(["04", "10", "12", "31", "03", "32", "99", "00", "1٢"]).map(
                lambda cost: f"{prefix}{cost}${_SALTED}")),
        st.just(KNOWN), st.just(KNOWN + "\n"), st.just(KNOWN[:-1] + "\n"), st.just(KNOWN[:30] + "\n" + KNOWN[31:]),
        st.just(KNOWN[:-1]), st.just(KNOWN + "x"), st.just(KNOWN.encode()),
        st.none(), st.integers(), st.just(""), st.just("\n"),
        st.text(alphabet=BCRYPT_ALPHABET + "$\n", max_size=70).map(lambda t: "$2b$12$" + t),
    )


@settings(max_examples=2000, deadline=None)
@given(st.lists(_cell(), max_size=8))
def test_histogram_is_what_classifying_each_value_says(values: list[object]) -> None:
    # Given any batch, When it is judged at once, Then it is either the cost histogram
    # classify_stored_hash gives value by value (all bcrypt), or "classify each" (None).
    kinds = [classify_stored_hash(v) for v in values]
    histogram = bcrypt_cost_histogram(values)
    if histogram is None:
        # ("Classify each" is also the answer for bytes and other scripts' digits.)
        assert values and (not all(k.scheme is HashScheme.BCRYPT for k in kinds)
                           or any(not isinstance(v, str) or not v.isascii() for v in values))
        return
    assert all(k.scheme is HashScheme.BCRYPT for k in kinds)
    expected: dict[int, int] = {}
    for kind in kinds:
        assert kind.cost is not None
        expected[kind.cost] = expected.get(kind.cost, 0) + 1
    assert histogram == expected and list(histogram) == list(expected)


def test_histogram_of_a_uniform_and_a_mixed_batch() -> None:
    assert bcrypt_cost_histogram([]) == {}
    assert bcrypt_cost_histogram([f"$2b$12${_SALTED}"] * 1000) == {12: 1000}
    mixed = [f"$2b$12${_SALTED}", f"$2y$10${_SALTED}", f"$2a$12${_SALTED}"]
    assert bcrypt_cost_histogram(mixed) == {12: 2, 10: 1}
    # Two hashes in one cell and an empty cell: as many characters as two cells, not two hashes.
    assert bcrypt_cost_histogram([f"$2b$12${_SALTED}\n$2b$12${_SALTED}", ""]) is None
    assert bcrypt_cost_histogram([f"$2b$12${_SALTED}", None]) is None


# --- bcrypt_lines_costs: values joined by the database, judged as bytes -------------------------


def _joined(values: list[str]) -> bytes:
    """The values as PostgreSQL's string_agg(v, E'\\n') gives them, plus the last newline."""
    return b"".join(v.encode() + b"\n" for v in values)


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.one_of(_cell().filter(lambda v: isinstance(v, str)),
                          st.text(max_size=70), st.sampled_from(["$2b$١٢$" + _SALTED])),
                max_size=8))
def test_lines_say_what_the_histogram_and_each_value_say(values: list[str]) -> None:
    # Given any text values, When they are judged joined, as bytes, in one pass
    costs = bcrypt_lines_costs(_joined(values), len(values))
    # Then it is the batch histogram exactly (None included: "classify each"), and a
    # histogram is what classify_stored_hash says value by value
    assert costs == bcrypt_cost_histogram(values)
    if costs is not None:
        assert list(costs) == list(bcrypt_cost_histogram(values) or {})
        kinds = [classify_stored_hash(v) for v in values]
        assert all(k.scheme is HashScheme.BCRYPT for k in kinds)
        assert sum(costs.values()) == len(values)
        assert all(costs[k.cost] for k in kinds if k.cost is not None)


def test_lines_of_well_formed_hashes_and_lines_that_only_look_so() -> None:
    good = [f"$2{v}${c:02d}${_SALTED}" for v in "aby" for c in (4, 10, 12, 31)]
    assert bcrypt_lines_costs(_joined(good), len(good)) == {4: 3, 10: 3, 12: 3, 31: 3}
    assert bcrypt_lines_costs(_joined([good[2]] * 1000), 1000) == {12: 1000}
    assert bcrypt_lines_costs(b"", 0) == {}
    # Two hashes in one value and an empty one: the lines look right, the count does not
    two = [f"{good[2]}\n{good[2]}", ""]
    assert bcrypt_lines_costs(_joined(two), 3) is None and bcrypt_lines_costs(_joined(two), 2) is None
    # A NULL left out by the database: fewer values than the caller counts
    assert bcrypt_lines_costs(_joined(good[:2]), 3) is None
    # Other scripts' digits: bcrypt to classify_stored_hash, so never certified here
    arabic = f"$2b$١٢${_SALTED}"
    assert classify_stored_hash(arabic).scheme is HashScheme.BCRYPT
    assert bcrypt_lines_costs(_joined([arabic]), 1) is None
    for bad in ("$2b$03$" + _SALTED, "$2b$32$" + _SALTED, "$2c$12$" + _SALTED, "$3b$12$" + _SALTED,
                "x2b$12$" + _SALTED, "$2b$12$" + _SALTED[:-1] + "!", "$2b$12$" + _SALTED[:-1] + "é"[:1],
                "$2b$1a$" + _SALTED, "$2b$12x" + _SALTED):
        assert bcrypt_lines_costs(_joined([good[0], bad]), 2) is None, bad


# --- the native twin of bcrypt_lines_costs: the same answer on any bytes ----------------------

_NATIVE = fernet_engine.native_module()
_native_only = pytest.mark.skipif(_NATIVE is None, reason="the native engine is not installed here")
_GOOD_LINE = f"$2b$12${_SALTED}\n".encode()


@_native_only
@settings(max_examples=3000, deadline=None)
@given(st.one_of(
    # Values as the database joins them: mostly hashes, some anything.
    st.lists(st.one_of(_cell().filter(lambda v: isinstance(v, str)), st.text(max_size=70),
                       st.sampled_from(["$2b$١٢$" + _SALTED, f"$2y$31${_SALTED}"])),
             max_size=8).map(lambda values: (_joined(values), len(values))),
    # Any bytes, any count.
    st.tuples(st.binary(max_size=200), st.integers(min_value=0, max_value=4)),
    # Good lines with one byte anywhere set to anything.
    st.tuples(st.integers(min_value=1, max_value=3), st.integers(min_value=0, max_value=182),
              st.integers(min_value=0, max_value=255)).map(
        lambda t: ((lambda b: b[:t[1] % len(b)] + bytes([t[2]]) + b[t[1] % len(b) + 1:])(
            _GOOD_LINE * t[0]), t[0]))))
def test_the_native_lines_classifier_says_what_the_python_one_says(case: tuple[bytes, int]) -> None:
    lines, count = case
    assert _NATIVE is not None
    assert _NATIVE.bcrypt_lines_costs(lines, count) == bcrypt_lines_costs(lines, count)


@_native_only
def test_the_scan_judges_with_the_native_classifier_where_it_is_installed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    lines = _joined([f"$2{v}${c:02d}${_SALTED}" for v in "aby" for c in (4, 10, 12, 31)])
    classify, engine = lines_classifier()
    assert engine == fernet_engine.NATIVE and classify(lines, 12) == {4: 3, 10: 3, 12: 3, 31: 3}
    # And the Python path where it is turned off, saying so
    monkeypatch.setenv(fernet_engine.ENGINE_ENV, "python")
    assert lines_classifier() == (bcrypt_lines_costs, fernet_engine.PYTHON)


def _fake_check(code: str, stored: object) -> HashMatch:
    return HashMatch.MATCH if stored == f"hash({code})" else HashMatch.NO_MATCH


def test_matching_in_order_costs_one_check_per_code() -> None:
    codes = [f"code{i}" for i in range(10)]
    rows = [(100 + i, f"hash(code{i})") for i in range(10)]
    matching = match_codes_to_rows(codes, rows, check=_fake_check)
    assert matching.verifications == 10 and not matching.unmatched_codes
    assert matching.pairs[0] == (1, 100)


def test_matching_out_of_order_stops_at_first_match() -> None:
    codes = [f"code{i}" for i in range(10)]
    rows = [(100 + i, f"hash(code{9 - i})") for i in range(10)]
    matching = match_codes_to_rows(codes, rows, check=_fake_check)
    assert not matching.unmatched_codes and not matching.unmatched_rows
    assert 10 < matching.verifications <= 60 < 100


def test_matching_reports_codes_without_rows() -> None:
    matching = match_codes_to_rows(["a", "b"], [(1, "hash(a)"), (2, "b")],
                                   check=_fake_check)
    assert matching.unmatched_codes == (2,) and matching.unmatched_rows == (2,)
