"""keys.hsm_custody: its verdict and proofs on hand-made observations (every rule of the token
judged as found), and the check against the reference service with the Redis password kept
out of the HSM. The violations planted into a running stack's token are in
test_hsm_as_found.py."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import jwt
import pytest
from cryptography.fernet import Fernet
from verdict_asserts import assert_verdict

from checks.keys.hsm_custody import (
    JwtProof,
    RingProof,
    check_hsm_custody,
    custody_report,
    hsm_custody_verdict,
    hsm_objects_evidence,
    prove_jwt,
    prove_token_ring,
)
from harness.evidence_kinds import HsmObjectsEvidence
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


def listing(*objects: HsmObject, public: tuple[HsmObject, ...] | None = ()) -> TokenListing:
    return TokenListing("/lib.so", "SoftHSM", "votriz", "1", tuple(objects), public_objects=public)


def material(name: str) -> tuple[str, ...]:
    """Hand-made fingerprints: objects given the same name share key material."""
    return (f"hmac-sha256:{name}",)


def full(*extra: HsmObject, skip: str = "", public: tuple[HsmObject, ...] | None = ()) -> TokenListing:
    return listing(*(obj(NS + label, fingerprints=material(label)) for label in ALL_LABELS
                     if label != skip), *extra, public=public)


OK_JWT = JwtProof(True, "a JWT verifies")
OK_RING = RingProof(5, 5, (), "5 of 5 rows decrypt")


def test_custody_passes_and_reports_extractable_keys() -> None:
    verdict = assert_verdict(hsm_custody_verdict(full(), CLASSES, NS, OK_JWT, OK_RING), Outcome.PASS, starts=(
        "All 8 key classes are on the token under 'votriz/' with PRIVATE=True, TOKEN=True; 8 "
        "object(s) on the token judged as found; a session without login sees 0 object(s); 8 of 8 "
        "fingerprinted for copies of key material: no problem found; a JWT verifies"),
        says=["8 key(s) are readable or extractable (reported, allowed by the page)"])
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
    assert "votriz/api/stripe: API key: Stripe object with TOKEN=False" in verdict.message


def test_custody_fails_on_a_key_outside_the_namespace() -> None:
    verdict = hsm_custody_verdict(full(obj("legacy-key")), CLASSES, NS, OK_JWT, OK_RING)
    assert verdict.outcome is Outcome.FAIL
    assert verdict.message == ("1 custody problem(s) on the token: legacy-key: key outside the "
                               "namespace 'votriz/'.")


# --- the token judged as found ------------------------------------------------------------------

COPY = NS + "token-key-copy"


def test_a_copy_of_a_key_under_another_label_fails_as_found() -> None:
    # Given the token key again under a namespaced label of no class, extractable, not sensitive
    copy = obj(COPY, fingerprints=material("token-encryption/v1"))
    verdict = hsm_custody_verdict(full(copy), CLASSES, NS, OK_JWT, OK_RING)
    # Then it FAILs naming the copy and the original, and the evidence says the same
    assert verdict.outcome is Outcome.FAIL
    assert verdict.message == ("1 custody problem(s) on the token: votriz/token-key-copy: holds the "
                               "same key material as votriz/token-encryption/v1 (not a retained "
                               "rotation version).")
    row, = (r for r in verdict.details["objects"] if r["label"] == COPY)
    assert row["same_material_as"] == ["votriz/token-encryption/v1"] and row["key_class"] is None


def test_a_copy_readable_without_login_fails_and_says_so() -> None:
    # Given the same copy with CKA_PRIVATE false, seen (and read) by a session without the PIN
    copy = obj(COPY, private=False, fingerprints=material("token-encryption/v1"), value_read=True)
    verdict = hsm_custody_verdict(full(copy, public=(copy,)), CLASSES, NS, OK_JWT, OK_RING)
    assert verdict.outcome is Outcome.FAIL
    assert verdict.message.startswith(
        "2 custody problem(s) on the token: votriz/token-key-copy: readable without login: a "
        "session without the PIN sees it (its value was read); votriz/token-key-copy: holds the "
        "same key material as votriz/token-encryption/v1")
    assert verdict.details["seen_without_login"] == [COPY]


def test_a_non_private_object_is_never_called_private_message_and_evidence_agree() -> None:
    # The measured lie: "All 8 key classes are private token objects" while the evidence listed
    # an object as not private. One observation with one non-private object, seen or not by the
    # public session: the message names it, its evidence row says PRIVATE false and carries the
    # same problem, and the typed evidence is built from the verdict's own rows.
    for public in ((), None):
        stray = obj(NS + "stray", private=False, fingerprints=material("stray"))
        verdict = hsm_custody_verdict(full(stray, public=public), CLASSES, NS, OK_JWT, OK_RING)
        assert verdict.outcome is Outcome.FAIL and "private token objects" not in verdict.message
        evidence = hsm_objects_evidence(full(stray, public=public), verdict)
        assert isinstance(evidence, HsmObjectsEvidence)
        not_private = {o.label for o in evidence.objects if o.private is False}
        with_problems = {o.label for o in evidence.objects if o.problems}
        named = {p.split(": ")[0] for p in verdict.details["problems"]}
        assert not_private == with_problems == named == {NS + "stray"}
        assert all(f"{label}: " in verdict.message for label in named)


def test_message_and_evidence_agree_on_every_problem() -> None:
    # Every problem the message names is on the evidence row of the object it names.
    objects = (obj(COPY, fingerprints=material("jwt-signing")),
               obj(NS + "blob", object_class="DATA", key_type=None, key_shaped=True, value_len=32,
                   fingerprints=material("blob")),
               obj("outside"), obj(NS + "loose", token=False, fingerprints=material("loose")))
    report = custody_report(full(*objects), CLASSES, NS)
    rows = {row["label"]: row for row in report.rows}
    assert len(report.problems) == 4
    for problem in report.problems:
        label, _, text = problem.partition(": ")
        assert text in rows[label]["problems"]
    verdict = hsm_custody_verdict(full(*objects), CLASSES, NS, OK_JWT, OK_RING)
    assert verdict.details["problems"] == list(report.problems)


def test_a_retained_rotation_version_may_share_material() -> None:
    previous = obj(NS + "jwt-signing/previous", fingerprints=material("jwt-signing"))
    verdict = hsm_custody_verdict(full(previous), CLASSES, NS, OK_JWT, OK_RING)
    assert verdict.outcome is Outcome.PASS, verdict.message
    assert "votriz/jwt-signing/previous share material as retained rotation versions" in verdict.message
    # Two versions of the token ring holding one key are a copy, not a rotation.
    v2 = obj(NS + "token-encryption/v2", fingerprints=material("token-encryption/v1"))
    verdict = hsm_custody_verdict(full(v2), CLASSES, NS, OK_JWT, OK_RING)
    assert verdict.outcome is Outcome.FAIL and "votriz/token-encryption/v2: holds the same" in verdict.message


def test_a_data_object_holding_a_keys_material_fails() -> None:
    data = obj(NS + "notes", object_class="DATA", key_type=None, fingerprints=material("db/password"),
               key_shaped=False, sensitive=None, extractable=None)
    verdict = hsm_custody_verdict(full(data), CLASSES, NS, OK_JWT, OK_RING)
    assert verdict.outcome is Outcome.FAIL
    assert verdict.message == ("1 custody problem(s) on the token: votriz/notes: data object holding "
                               "the key material of votriz/db/password.")


def test_a_data_object_of_key_shape_fails_anywhere_on_the_token() -> None:
    data = obj("vendor/blob", object_class="DATA", key_type=None, key_shaped=True, value_len=32,
               fingerprints=material("blob"), sensitive=None, extractable=None)
    verdict = hsm_custody_verdict(full(data), CLASSES, NS, OK_JWT, OK_RING)
    assert verdict.outcome is Outcome.FAIL
    assert "vendor/blob: data object holding key material (32 bytes of random-looking data)" in verdict.message
    # A text data object outside the namespace, not key-shaped, is only listed.
    text = obj("vendor/info", object_class="DATA", key_type=None, key_shaped=False, private=False,
               fingerprints=material("info"), sensitive=None, extractable=None)
    verdict = hsm_custody_verdict(full(text, public=(text,)), CLASSES, NS, OK_JWT, OK_RING)
    assert verdict.outcome is Outcome.PASS, verdict.message
    assert "a session without login sees 1 object(s)" in verdict.message


def test_an_object_of_no_class_is_held_to_the_strictest_attributes() -> None:
    classes = CLASSES.model_copy(update={"classes": (
        CLASSES.classes[0].model_copy(update={"require": {"sensitive": True}}), *CLASSES.classes[1:])})
    jwt_sensitive = obj(NS + "jwt-signing", sensitive=True, fingerprints=material("jwt-signing"))
    base = [o for o in full().objects if o.label != NS + "jwt-signing"]
    backup = obj(NS + "backup/key", fingerprints=material("backup"))
    verdict = hsm_custody_verdict(listing(*base, jwt_sensitive, backup), classes, NS, OK_JWT, OK_RING)
    assert verdict.outcome is Outcome.FAIL
    assert ("votriz/backup/key: matches no key class and has SENSITIVE=False (the strictest classes "
            "require PRIVATE=True, SENSITIVE=True, TOKEN=True)") in verdict.message
    # With the default classes the same object meets the strictest attributes and is reported.
    verdict = hsm_custody_verdict(full(backup), CLASSES, NS, OK_JWT, OK_RING)
    assert verdict.outcome is Outcome.PASS
    assert "1 object(s) of the namespace match no class and meet the strictest attributes " \
        "(votriz/backup/key)" in verdict.message


def test_a_key_seen_without_login_fails_even_when_it_claims_to_be_private() -> None:
    # A token that lists an object to a public session although it says PRIVATE=True.
    seen = obj(NS + "api/fal", fingerprints=material("api/fal"))
    verdict = hsm_custody_verdict(full(public=(seen,)), CLASSES, NS, OK_JWT, OK_RING)
    assert verdict.outcome is Outcome.FAIL
    assert ("votriz/api/fal: readable without login: a session without the PIN sees it (it is "
            "listed and usable)") in verdict.message


def test_without_a_public_session_the_message_does_not_claim_one() -> None:
    verdict = hsm_custody_verdict(full(public=None), CLASSES, NS, OK_JWT, OK_RING)
    assert verdict.outcome is Outcome.PASS
    assert "a session without login was not opened" in verdict.message
    assert verdict.details["seen_without_login"] is None


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
