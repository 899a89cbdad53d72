"""keys.hsm_custody: its verdict and proofs on hand-made observations, and the check against
the reference service with the Redis password kept out of the HSM."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import jwt
import pytest
from cryptography.fernet import Fernet

from checks.keys.hsm_custody import (
    JwtProof,
    RingProof,
    check_hsm_custody,
    hsm_custody_verdict,
    prove_jwt,
    prove_token_ring,
)
from harness.outcomes import Outcome
from harness.probes.channels import ChannelRow
from harness.probes.hsm import HsmObject, TokenListing

from .conftest import CLASSES, run_with_fault

NS = "votriz/"
ALL_LABELS = ["jwt-signing", "token-encryption/v1", "api/anthropic", "api/fal", "api/resend",
              "api/stripe", "db/password", "redis/password"]


def obj(label: str, **flags) -> HsmObject:
    base = dict(object_class="SECRET_KEY", key_type="GENERIC_SECRET", label=label, id_hex="",
                id_text="", token=True, private=True, sensitive=False, extractable=True,
                always_sensitive=False, never_extractable=False, local=False, value_len=32)
    base.update(flags)
    return HsmObject(**base)


def listing(*objects: HsmObject) -> TokenListing:
    return TokenListing("/lib.so", "SoftHSM", "votriz", "1", tuple(objects))


def full(*extra: HsmObject, skip: str = "") -> TokenListing:
    return listing(*(obj(NS + label) for label in ALL_LABELS if label != skip), *extra)


OK_JWT = JwtProof(True, "a JWT verifies")
OK_RING = RingProof(5, 5, (), "5 of 5 rows decrypt")


def test_custody_passes_and_reports_extractable_keys() -> None:
    verdict = hsm_custody_verdict(full(), CLASSES, NS, OK_JWT, OK_RING)
    assert verdict.outcome is Outcome.PASS
    assert "All 8 key classes are private token objects under 'votriz/'" in verdict.message
    assert "8 key(s) are readable or extractable (reported, allowed by the page)" in verdict.message
    assert len(verdict.details["extractable"]) == 8


def test_custody_fails_when_a_class_is_missing() -> None:
    verdict = hsm_custody_verdict(full(skip="redis/password"), CLASSES, NS, OK_JWT, OK_RING)
    assert verdict.outcome is Outcome.FAIL
    assert verdict.message == "Not in the HSM: Redis password (expected votriz/redis/password)."


def test_custody_fails_on_a_session_object_or_public_key() -> None:
    bad = full(skip="api/stripe")
    bad = listing(*bad.objects, obj(NS + "api/stripe", token=False))
    verdict = hsm_custody_verdict(bad, CLASSES, NS, OK_JWT, OK_RING)
    assert verdict.outcome is Outcome.FAIL
    assert "votriz/api/stripe has TOKEN=False, PRIVATE=True" in verdict.message


def test_custody_fails_on_a_key_outside_the_namespace() -> None:
    verdict = hsm_custody_verdict(full(obj("legacy-key")), CLASSES, NS, OK_JWT, OK_RING)
    assert verdict.outcome is Outcome.FAIL
    assert verdict.message == "Keys outside the namespace 'votriz/': legacy-key."


def test_custody_fails_when_the_jwt_is_signed_with_another_key() -> None:
    verdict = hsm_custody_verdict(full(), CLASSES, NS, JwtProof(False, "a JWT does not verify"), OK_RING)
    assert verdict.outcome is Outcome.FAIL
    assert "signs sessions with another key" in verdict.message


def test_custody_fails_when_rows_are_under_another_key() -> None:
    verdict = hsm_custody_verdict(full(), CLASSES, NS, OK_JWT, RingProof(3, 2, (7,), "2 of 3"))
    assert verdict.outcome is Outcome.FAIL and "rows 7" in verdict.message


def test_prove_jwt_both_sides() -> None:
    key = b"k" * 32
    token = jwt.encode({"sub": "1", "exp": int(time.time()) + 60}, key, algorithm="HS256")
    assert prove_jwt(token, key, label="votriz/jwt-signing").verified is True
    assert prove_jwt(token, b"x" * 32, label="votriz/jwt-signing").verified is False
    assert prove_jwt(token, None, label="votriz/jwt-signing").verified is None


def test_prove_token_ring_both_sides() -> None:
    key, other = b"a" * 32, b"b" * 32
    good = Fernet(base64.urlsafe_b64encode(key)).encrypt(b"tok").decode()
    bad = Fernet(base64.urlsafe_b64encode(other)).encrypt(b"tok").decode()
    proof = prove_token_ring([ChannelRow(1, 1, good, None), ChannelRow(2, 1, good, bad)], [key])
    assert (proof.sampled, proof.decrypted, proof.undecryptable) == (2, 1, (2,))


@pytest.mark.integration
@pytest.mark.slow
def test_custody_fails_when_redis_password_is_not_in_the_hsm(stack_factory, tmp_path: Path) -> None:
    verdict, _, _, _ = run_with_fault(stack_factory, "key-not-in-hsm", check_hsm_custody, tmp_path)
    assert verdict.outcome is Outcome.FAIL
    assert verdict.message == "Not in the HSM: Redis password (expected votriz/redis/password)."
