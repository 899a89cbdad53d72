"""keys.hsm_custody: every key of the page's table is in the HSM, namespaced, and in use.

The HSM's listing shows every key class as a private token object under the
namespace; a JWT the service issues verifies under the HSM's signing secret,
and sampled ``channels`` rows decrypt under the HSM's token key ring.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import jwt
import pytest

from harness.canaries import canary_session_token
from harness.evidence import EvidenceRecorder
from harness.key_classes import KeyClasses
from harness.outcomes import Verdict
from harness.policy import Policy
from harness.prerequisites import require_hsm
from harness.probes import hsm as hsm_probe
from harness.probes.channel_load import CANARY_PURPOSE
from harness.probes.channels import ChannelRow, read_channel_rows
from harness.probes.hsm import TokenListing
from harness.profile import TargetProfile
from harness.redaction import KnownSecrets
from harness.token_ring import decrypts, fernet_of, token_ring


@dataclass(frozen=True)
class JwtProof:
    """Whether a JWT the service issued verifies under the HSM's signing secret.

    Attributes:
        verified: True / False; None when it could not be tried.
        detail: what was tried, in one sentence.
    """

    verified: bool | None
    detail: str


@dataclass(frozen=True)
class RingProof:
    """Whether stored channel tokens decrypt under the HSM's token key ring.

    Attributes:
        sampled: rows tried.
        decrypted: rows whose every token decrypted.
        undecryptable: ids of rows with a token that did not.
        detail: one sentence.
    """

    sampled: int
    decrypted: int
    undecryptable: tuple[int, ...]
    detail: str


def prove_jwt(token: str, key: bytes | None, *, label: str, now: float | None = None) -> JwtProof:
    """Verify an HS256 JWT under ``key`` (the HSM's value), without printing either."""
    if key is None:
        return JwtProof(None, f"the HSM value of {label} could not be read")
    try:
        jwt.decode(token, key, algorithms=["HS256"],
                   options={"verify_exp": now is None, "verify_aud": False})
    except jwt.InvalidSignatureError:
        return JwtProof(False, f"a JWT issued by POST /login does not verify under {label}")
    except jwt.InvalidTokenError as exc:
        return JwtProof(False, f"a JWT issued by POST /login is invalid under {label}: "
                               f"{type(exc).__name__}")
    return JwtProof(True, f"a JWT issued by POST /login verifies (HS256) under {label}")


def prove_token_ring(rows: Sequence[ChannelRow], ring: Sequence[bytes]) -> RingProof:
    """Try every token of ``rows`` under the ring."""
    if not ring:
        return RingProof(len(rows), 0, tuple(r.id for r in rows),
                         "no token-encryption key could be read from the HSM")
    fernet = fernet_of(ring)
    bad = tuple(row.id for row in rows
                if any(tok is not None and decrypts(fernet, tok) is None
                       for tok in (row.access_token_enc, row.refresh_token_enc)))
    return RingProof(len(rows), len(rows) - len(bad), bad,
                     f"{len(rows) - len(bad)} of {len(rows)} sampled channels rows decrypt under "
                     f"the HSM's token key ring ({len(ring)} version(s))")


def _matches(label: str, namespace: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(label, namespace + pattern) for pattern in patterns)


def hsm_custody_verdict(listing: TokenListing, classes: KeyClasses, namespace: str,
                        jwt_proof: JwtProof | None, ring_proof: RingProof | None) -> Verdict:
    """Every key class is on the token, namespaced, TOKEN and PRIVATE; the keys are in use."""
    present: dict[str, list[str]] = {}
    missing: list[str] = []
    problems: list[str] = []
    for key_class in classes.classes:
        labels = [obj.label for obj in listing.objects
                  if _matches(obj.label, namespace, key_class.labels)]
        present[key_class.name] = labels
        if not labels:
            expected = ", ".join(namespace + p for p in key_class.labels)
            missing.append(f"{key_class.name} (expected {expected})")
    for obj in listing.objects:
        in_table = any(_matches(obj.label, namespace, c.labels) for c in classes.classes)
        if in_table and (obj.token is not True or obj.private is not True):
            problems.append(f"{obj.label} has TOKEN={obj.token}, PRIVATE={obj.private}")
    outside = [obj.label or "(no label)" for obj in listing.objects
               if obj.object_class in ("SECRET_KEY", "PRIVATE_KEY")
               and not obj.label.startswith(namespace)]
    extractable = [obj.label for obj in listing.objects if obj.can_leave_token]
    details: dict[str, Any] = {
        "token": f"{listing.token_label} (serial {listing.token_serial}, {listing.library})",
        "namespace": namespace,
        "objects": [obj.as_evidence() for obj in listing.objects],
        "classes": present,
        "extractable": extractable,
        "extractable_note": ("reported, not failed: the page allows keys to be read through the "
                             "secure storage interface at process start, which needs them readable"),
        "jwt_proof": jwt_proof.detail if jwt_proof else "not tried (no [api] section)",
        "token_ring_proof": ring_proof.detail if ring_proof else "not tried (no [database] section)",
    }
    if missing:
        return Verdict.failed(f"Not in the HSM: {'; '.join(missing)}.", **details)
    if problems:
        return Verdict.failed(f"Keys not kept as private token objects: {'; '.join(problems)}.",
                              **details)
    if outside:
        return Verdict.failed(f"Keys outside the namespace {namespace!r}: {', '.join(outside)}.",
                              **details)
    if jwt_proof is not None and jwt_proof.verified is False:
        return Verdict.failed(f"The service signs sessions with another key: {jwt_proof.detail}.",
                              **details)
    if ring_proof is not None and ring_proof.undecryptable:
        ids = ", ".join(map(str, ring_proof.undecryptable[:10]))
        return Verdict.failed(f"Channel tokens are encrypted under a key not in the HSM: "
                              f"{ring_proof.detail}; e.g. rows {ids}.", **details)
    if jwt_proof is not None and jwt_proof.verified is None:
        return Verdict.error(f"Cannot prove the JWT secret in use: {jwt_proof.detail}.", **details)
    proofs = "; ".join(p.detail for p in (jwt_proof, ring_proof) if p is not None)
    note = f" {len(extractable)} key(s) are readable or extractable (reported, allowed by the page)." \
        if extractable else ""
    return Verdict.passed(
        f"All {len(classes.classes)} key classes are private token objects under {namespace!r}"
        + (f"; {proofs}" if proofs else "") + "." + note, **details)


@pytest.mark.claims("KEYS-HSM", "KEYS-NAMESPACED", "KEYS-JWT-HSM", "KEYS-TOKEN-KEY-HSM",
                    "KEYS-API-KEYS-HSM", "KEYS-DB-PASSWORD-ROTATION",
                    "KEYS-REDIS-PASSWORD-ROTATION", "REST-TOKENS-KEY-HSM")
def check_hsm_custody(profile: TargetProfile, policy: Policy, known_secrets: KnownSecrets,
                      evidence: EvidenceRecorder, key_classes: KeyClasses) -> None:
    hsm = require_hsm(profile, evidence)
    ns = hsm.key_namespace
    snap = hsm_probe.snapshot(hsm, known_secrets, read_prefix=ns,
                              timeout_s=policy.timeouts.request_s)
    jwt_label = ns + key_classes.proof.jwt_signing
    jwt_proof: JwtProof | None = None
    if profile.api is not None:
        token = canary_session_token(profile, policy, known_secrets, CANARY_PURPOSE)
        jwt_proof = prove_jwt(token, snap.values.get(jwt_label), label=jwt_label)
    ring_proof: RingProof | None = None
    if profile.database is not None:
        rows = read_channel_rows(profile, policy, known_secrets, limit=200)
        ring = [v for _, _, v in token_ring(snap.values, ns + key_classes.proof.token_key_prefix)]
        ring_proof = prove_token_ring(rows, ring) if rows else RingProof(
            0, 0, (), "no channels rows to sample")
    evidence.attach("hsm-objects", [obj.as_evidence() for obj in snap.listing.objects])
    evidence.conclude(hsm_custody_verdict(snap.listing, key_classes, ns, jwt_proof, ring_proof))
