"""The secret-shape rule set on its vectors: every true positive found by its own rule, no
look-alike (the service's Fernet tokens, bcrypt hashes, keyed indexes, log lines) matched."""

from __future__ import annotations

import hashlib
import os
import secrets
import tomllib
import uuid
from pathlib import Path

import bcrypt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.formats.fernet import FernetKey, encrypt_fernet_token
from harness.formats.secret_patterns import (
    RULES,
    SecretRulesError,
    ShapeFinder,
    high_entropy,
    load_own_rules,
)

VECTORS = Path(__file__).resolve().parents[3] / "fixtures" / "vectors" / "secrets"
POSITIVES = tomllib.loads((VECTORS / "positives.toml").read_text())["positive"]
NEGATIVES = tomllib.loads((VECTORS / "negatives.toml").read_text())["negative"]
FINDER = ShapeFinder(key=b"k" * 32)


@pytest.mark.parametrize("vector", POSITIVES, ids=[f"{v['rule']}-{i}" for i, v in enumerate(POSITIVES)])
def test_each_true_positive_is_found_by_its_rule(vector: dict[str, str]) -> None:
    found = FINDER.find(vector["text"])
    assert [m.rule for m in found] == [vector["rule"]]
    # The fingerprint names the value without showing it.
    match = found[0]
    assert match.fingerprint.startswith("hmac:") and match.value not in repr(match)
    assert vector["text"][match.start:match.end] == match.value


def test_every_own_rule_and_the_main_detect_secrets_rules_have_a_vector() -> None:
    covered = {v["rule"] for v in POSITIVES}
    own = {rule.name for rule in RULES if rule.source == "votriz-audit"}
    assert own <= covered, own - covered
    assert {"jwt", "private-key", "aws-key", "stripe-key", "slack-token", "github-token",
            "basic-auth-url"} <= covered


@pytest.mark.parametrize("vector", NEGATIVES, ids=[v["what"] for v in NEGATIVES])
def test_no_look_alike_matches(vector: dict[str, str]) -> None:
    assert FINDER.find(vector["text"]) == []


def test_hints_are_in_every_match_of_their_rule() -> None:
    # A hint skips a rule on a text without it: it must be in each true positive.
    for vector in POSITIVES:
        rule = next(r for r in RULES if r.name == vector["rule"])
        text = vector["text"].lower() if rule.folded else vector["text"]
        assert rule.hint in text, rule.name


def test_the_service_look_alikes_in_bulk_match_nothing() -> None:
    # Given the service's own stored values, many of them (50,000 Fernet tokens, 2,000 bcrypt
    # hashes, 20,000 keyed indexes and UUIDs)
    key = FernetKey(os.urandom(32), "t")
    tokens = [encrypt_fernet_token(os.urandom(48), key) for _ in range(50_000)]
    hashes = [bcrypt.hashpw(b"x", bcrypt.gensalt(4)).decode() for _ in range(2_000)]
    digests = [hashlib.sha256(os.urandom(8)).hexdigest() for _ in range(20_000)]
    uuids = [str(uuid.uuid4()) for _ in range(20_000)]
    # When the rule set runs over them, Then nothing matches
    assert FINDER.find("\n".join(tokens + hashes + digests + uuids)) == []


def test_a_token_inside_a_longer_token_run_is_not_a_finding() -> None:
    inside = "gAAAAAB" + "x" * 20 + "-ya29." + "a" * 40
    assert [m.rule for m in FINDER.find(inside)] == []
    assert [m.rule for m in FINDER.find("token=ya29." + "a" * 40)] == ["google-oauth-access-token"]


def test_fingerprints_are_keyed_and_stable_within_a_run() -> None:
    value = "ya29." + secrets.token_urlsafe(40)
    one, other = ShapeFinder(key=b"a" * 32), ShapeFinder(key=b"b" * 32)
    assert one.fingerprint(value) == one.find(f"x {value}")[0].fingerprint
    assert one.fingerprint(value) != other.fingerprint(value)
    assert hashlib.sha256(value.encode()).hexdigest()[:12] not in one.fingerprint(value)


def test_high_entropy_is_detect_secrets_measure() -> None:
    assert high_entropy(secrets.token_urlsafe(32))
    assert high_entropy(secrets.token_hex(32))
    assert not high_entropy("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
    assert not high_entropy("short")
    assert not high_entropy("canary+run1@audit.invalid")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400) | st.binary(max_size=400).map(lambda b: b.decode("latin-1")))
def test_never_crashes_and_matches_lie_inside_the_text(text: str) -> None:
    for match in FINDER.find(text):
        assert 0 <= match.start < match.end <= len(text)
        assert text[match.start:match.end] == match.value


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(POSITIVES), st.text(alphabet=" \t\n{}\"'=:;,", max_size=5),
       st.text(alphabet=" \t\n{}\"',;", max_size=5))
def test_a_positive_is_found_whatever_surrounds_it(vector: dict[str, str], before: str,
                                                   after: str) -> None:
    found = FINDER.find(before + vector["text"] + after)
    assert vector["rule"] in [m.rule for m in found]


def test_a_jwt_match_covers_its_signature() -> None:
    token = next(v["text"] for v in POSITIVES if v["rule"] == "jwt" and v["text"].startswith("eyJ"))
    (match,) = FINDER.find(f"cookie={token}; path=/")
    assert match.value == token


# --- Our rules are data (fixtures/policy/secret-patterns.toml) -------------------------------

def test_a_rules_file_gives_bounded_case_sensitive_rules_and_value_only_field_rules(tmp_path: Path) -> None:
    # Given a rules file with a case-sensitive rule, one that ignores case and a field rule
    path = tmp_path / "rules.toml"
    path.write_text("schema_version = 1\n"
                    "[[rule]]\nname = 'acme-key'\nkind = 'Acme key'\nregex = 'acme_[0-9a-z]{20}'\nhint = 'acme_'\n"
                    "[[rule]]\nname = 'acme-header'\nkind = 'Acme header'\n"
                    "regex = '(?i)x-acme:\\s*[0-9a-z]{20}'\nhint = 'x-acme'\n"
                    "[[field_rule]]\nname = 'acme-field'\nkind = 'Acme field'\nregex = 'acme_secret'\n"
                    "hint = 'acme_secret'\n")
    # When it is loaded
    key, header, field = load_own_rules(path)
    finder = ShapeFinder((key, header, field), key=b"k" * 32)
    # Then the case-sensitive rule stands alone, the other may follow any character and is
    # hinted in lower case, and the field rule reports the value alone, if it reads as a token
    value = "acme_" + "k3y9" * 5
    assert [m.rule for m in finder.find(f"id {value} end")] == ["acme-key"]
    assert finder.find(f"x{value}") == [] and finder.find(f"{value}x") == []
    assert (key.bounded, key.folded, header.bounded, header.folded) == (True, False, False, True)
    assert [m.rule for m in finder.find("X-ACME: " + "q1w2" * 5)] == ["acme-header"]
    secret = "Zr8" + "qW3eR5tY7u" * 2
    assert [(m.rule, m.value) for m in finder.find(f'{{"ACME_SECRET": "{secret}"}}')] == [("acme-field", secret)]
    assert finder.find('{"acme_secret": "' + "a" * 24 + '"}') == []


@pytest.mark.parametrize(("body", "said"), [
    ("schema_version = 1\n[[rule]]\nname = 'x'\nkind = 'x'\nregex = 'a(b'\n",
     "rule[0].regex: Value error, not a regular expression: missing ), unterminated subpattern"),
    ("schema_version = 1\n[[rule]]\nname = 'x'\nkind = 'x'\nregex = 'ab'\nflags = 'i'\n",
     "rule[0].flags: unknown key"),
    ("schema_version = 2\n", "schema_version: Input should be 1"),
    ("[[rule]\n", "not valid TOML"),
])
def test_a_wrong_rules_file_is_one_line_naming_the_place(tmp_path: Path, body: str, said: str) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(body)
    with pytest.raises(SecretRulesError) as raised:
        load_own_rules(path)
    assert said in str(raised.value) and "\n" not in str(raised.value)
    assert str(raised.value).startswith(str(path))


def test_a_missing_rules_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(SecretRulesError, match=r"cannot read the secret rules") as raised:
        load_own_rules(tmp_path / "absent.toml")
    assert "\n" not in str(raised.value)


def test_the_bundled_rules_file_holds_every_own_rule_once() -> None:
    own = load_own_rules()
    assert [r.name for r in own] == [r.name for r in RULES if r.source == "votriz-audit"]
    assert len({r.name for r in RULES}) == len(RULES)
