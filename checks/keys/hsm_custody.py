"""keys.hsm_custody: every key of the page's table is in the HSM, namespaced, and in use; and
every object on the token, as found, is kept as a key must be.

The token is judged as found, object by object (keys and data objects, the
audit's or not): every key class is on it under the namespace with the
attributes the key classes require; nothing a session WITHOUT the PIN sees is
a key or holds key material; no key material is on the token under two labels
(compared by keyed fingerprints inside the harness, never printed) unless the
second is a retained rotation version the key classes name; no data object
holds key material; an object of the namespace that matches no class is held
to the strictest attributes of the classes; no key lies outside the namespace.
Then the keys are shown in use: a JWT the service issues verifies under the
HSM's signing secret, and sampled ``channels`` rows decrypt under the HSM's
token key ring.

:func:`custody_report` builds, from one listing, both the rows of the evidence
and the problems the message names, so the two cannot disagree.
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
from harness.evidence_kinds import HsmObjectsEvidence
from harness.key_classes import KeyClass, KeyClasses, strictest_requirements
from harness.outcomes import Verdict
from harness.policy import Policy
from harness.prerequisites import require_hsm
from harness.probes import hsm as hsm_probe
from harness.probes.channel_load import CANARY_PURPOSE
from harness.probes.channels import ChannelRow, read_channel_rows
from harness.probes.hsm import HsmObject, TokenListing
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


# Classes of objects that hold or are key material (public keys and certificates are public).
_HOLDS_SECRETS = ("SECRET_KEY", "PRIVATE_KEY", "DATA")
_KEYS = ("SECRET_KEY", "PRIVATE_KEY")


@dataclass(frozen=True)
class CustodyReport:
    """One listing judged object by object: the evidence rows and the problems, together.

    Attributes:
        rows: one evidence row per object (its attributes, its class, the labels sharing
            its material, whether a session without login saw it, its problems).
        missing: key classes with no object, with the labels expected.
        problems: one sentence per problem, in the order judged; each names its object.
        unknown: labels in the namespace that match no key class.
        retained_copies: labels allowed to share material as retained rotation versions.
        fingerprinted: objects whose material was fingerprinted.
        public_labels: labels a session without login saw (None: not looked at).
        extractable: labels whose value can leave the token.
    """

    rows: tuple[dict[str, Any], ...]
    missing: tuple[str, ...]
    problems: tuple[str, ...]
    unknown: tuple[str, ...]
    retained_copies: tuple[str, ...]
    fingerprinted: int
    public_labels: tuple[str, ...] | None
    extractable: tuple[str, ...]


def _name(obj: HsmObject) -> str:
    return obj.label or f"(no label, id {obj.id_hex or 'none'})"


def _material_groups(objects: Sequence[HsmObject]) -> list[list[int]]:
    """Indexes of objects sharing key material (any common fingerprint), groups of two or more."""
    parent = list(range(len(objects)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_seen: dict[str, int] = {}
    for index, obj in enumerate(objects):
        for print_ in obj.fingerprints:
            if print_ in first_seen:
                parent[root(index)] = root(first_seen[print_])
            else:
                first_seen[print_] = index
    groups: dict[int, list[int]] = {}
    for index in range(len(objects)):
        groups.setdefault(root(index), []).append(index)
    return [group for group in groups.values() if len(group) > 1]


def _unmet(obj: HsmObject, required: dict[str, bool], skip: set[str]) -> list[str]:
    return [f"{name.upper()}={getattr(obj, name, None)}" for name, value in sorted(required.items())
            if name not in skip and getattr(obj, name, None) is not value]


def _class_name(key_class: KeyClass | None) -> str | None:
    return key_class.name if key_class is not None else None


def _attributes(required: dict[str, bool]) -> str:
    return ", ".join(f"{name.upper()}={value}" for name, value in sorted(required.items()))


def custody_report(listing: TokenListing, classes: KeyClasses, namespace: str) -> CustodyReport:
    """Judge every object of the listing (see the module docstring); pure."""
    objects = listing.objects
    problems: dict[int, list[str]] = {i: [] for i in range(len(objects))}
    ordered: list[str] = []

    def problem(index: int, text: str) -> None:
        problems[index].append(text)
        ordered.append(f"{_name(objects[index])}: {text}")

    class_of = [next((c for c in classes.classes if _matches(o.label, namespace, c.labels)), None)
                for o in objects]
    missing = tuple(f"{c.name} (expected {', '.join(namespace + p for p in c.labels)})"
                    for c in classes.classes if c not in class_of)
    strictest = strictest_requirements(classes)
    in_ns = [o.label.startswith(namespace) for o in objects]
    # Seen without login: any key, or a data object in the namespace or holding key material.
    public_seen: set[int] = set()
    read_without_pin: set[tuple[str, str, str]] = set()
    readable: set[int] = set()
    public = listing.public_objects
    if public is not None:
        seen = {(o.object_class, o.label, o.id_hex) for o in public}
        public_seen = {i for i, o in enumerate(objects) if (o.object_class, o.label, o.id_hex) in seen}
        read_without_pin = {(o.object_class, o.label, o.id_hex) for o in public if o.value_read}
    # (a) readable without login
    for i, obj in enumerate(objects):
        if obj.object_class not in _HOLDS_SECRETS:
            continue
        if obj.object_class == "DATA" and not (in_ns[i] or obj.key_shaped):
            continue
        if i in public_seen:
            how = ("its value was read" if (obj.object_class, obj.label, obj.id_hex) in read_without_pin
                   else "it is listed and usable")
            problem(i, f"readable without login: a session without the PIN sees it ({how})")
            readable.add(i)
        elif obj.private is False:
            problem(i, "readable without login (CKA_PRIVATE=False)")
            readable.add(i)
    # (e) attributes of the classes; (d) the strictest for an object of the namespace of no class
    unknown: list[str] = []
    for i, obj in enumerate(objects):
        key_class = class_of[i]
        # PRIVATE=False is already named above as "readable without login".
        skip = {"private"} if i in readable else set()
        if key_class is not None:
            unmet = _unmet(obj, {**classes.custody.require, **key_class.require}, skip)
            if unmet:
                problem(i, f"{key_class.name} object with {', '.join(unmet)}")
        elif in_ns[i] and obj.object_class in _HOLDS_SECRETS:
            unknown.append(_name(obj))
            unmet = _unmet(obj, strictest, skip)
            if unmet:
                problem(i, f"matches no key class and has {', '.join(unmet)} (the strictest "
                           f"classes require {_attributes(strictest)})")
    # (b) the same material under two labels; (c) a data object holding a key's material
    retained: list[str] = []
    shared: dict[int, list[str]] = {}
    for group in _material_groups(objects):
        for i in group:
            shared[i] = [_name(objects[j]) for j in group if j != i]
        data = [i for i in group if objects[i].object_class == "DATA"]
        keys = [i for i in group if objects[i].object_class != "DATA"]
        for i in data:
            holder = ", ".join(_name(objects[j]) for j in keys) or ", ".join(shared[i])
            problem(i, f"data object holding the key material of {holder}")
        copies = [i for i in keys if _matches(objects[i].label, namespace,
                                              classes.custody.retained_versions)]
        originals = [i for i in keys if i not in copies]
        retained += [_name(objects[i]) for i in copies]
        if len(originals) > 1 or (not originals and len(copies) > 1):
            for i in originals[1:] or copies[1:]:
                first = originals[0] if originals else copies[0]
                problem(i, f"holds the same key material as {_name(objects[first])} "
                           "(not a retained rotation version)")
    # (c) data objects whose value has the shape of a raw key
    for i, obj in enumerate(objects):
        if obj.object_class == "DATA" and obj.key_shaped and i not in shared:
            form = obj.key_form or f"{obj.value_len} bytes of random-looking data"
            problem(i, f"data object holding key material ({form})")
    # (e) keys outside the namespace
    for i, obj in enumerate(objects):
        if obj.object_class in _KEYS and not in_ns[i]:
            problem(i, f"key outside the namespace {namespace!r}")
    rows = tuple({**obj.as_evidence(),
                  "key_class": _class_name(class_of[i]),
                  "same_material_as": shared.get(i, []),
                  "readable_without_login": (i in public_seen) if public is not None else None,
                  "problems": problems[i]} for i, obj in enumerate(objects))
    return CustodyReport(
        rows=rows, missing=missing, problems=tuple(ordered), unknown=tuple(unknown),
        retained_copies=tuple(retained),
        fingerprinted=sum(1 for o in objects if o.fingerprints),
        public_labels=tuple(_name(o) for o in public) if public is not None else None,
        extractable=tuple(_name(o) for o in objects if o.can_leave_token))


def _observed_sentence(report: CustodyReport, total: int) -> str:
    """What was looked at, in words (the same figures as the evidence)."""
    public = ("a session without login was not opened" if report.public_labels is None
              else f"a session without login sees {len(report.public_labels)} object(s)")
    return (f"{total} object(s) on the token judged as found; {public}; "
            f"{report.fingerprinted} of {total} fingerprinted for copies of key material")


def hsm_custody_verdict(listing: TokenListing, classes: KeyClasses, namespace: str,
                        jwt_proof: JwtProof | None, ring_proof: RingProof | None) -> Verdict:
    """The custody verdict; message and evidence both come from :func:`custody_report`."""
    report = custody_report(listing, classes, namespace)
    total = len(listing.objects)
    details: dict[str, Any] = {
        "token": f"{listing.token_label} (serial {listing.token_serial}, {listing.library})",
        "namespace": namespace,
        "objects": list(report.rows),
        "classes": {c.name: [r["label"] for r in report.rows if r["key_class"] == c.name]
                    for c in classes.classes},
        "problems": list(report.problems),
        "unknown_in_namespace": list(report.unknown),
        "retained_versions_sharing_material": list(report.retained_copies),
        "seen_without_login": (list(report.public_labels) if report.public_labels is not None
                               else None),
        "fingerprints": (f"{report.fingerprinted} of {total} objects; keyed with a per-run random "
                         "block, compared inside the harness, never recorded"),
        "extractable": list(report.extractable),
        "extractable_note": ("reported, not failed: the page allows keys to be read through the "
                             "secure storage interface at process start, which needs them readable"),
        "jwt_proof": jwt_proof.detail if jwt_proof else "not tried (no [api] section)",
        "token_ring_proof": ring_proof.detail if ring_proof else "not tried (no [database] section)",
    }
    if report.missing:
        return Verdict.failed(f"Not in the HSM: {'; '.join(report.missing)}.", **details)
    if report.problems:
        shown = "; ".join(report.problems[:8])
        more = f" (and {len(report.problems) - 8} more)" if len(report.problems) > 8 else ""
        return Verdict.failed(f"{len(report.problems)} custody problem(s) on the token: {shown}{more}.",
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
    required = _attributes(classes.custody.require)
    proofs = "; ".join(p.detail for p in (jwt_proof, ring_proof) if p is not None)
    unknown = (f"; {len(report.unknown)} object(s) of the namespace match no class and meet the "
               f"strictest attributes ({', '.join(report.unknown)})" if report.unknown else "")
    retained = (f"; {', '.join(report.retained_copies)} share material as retained rotation "
                "versions" if report.retained_copies else "")
    note = (f" {len(report.extractable)} key(s) are readable or extractable (reported, allowed by "
            "the page).") if report.extractable else ""
    return Verdict.passed(
        f"All {len(classes.classes)} key classes are on the token under {namespace!r} with "
        f"{required}; {_observed_sentence(report, total)}: no problem found{unknown}{retained}"
        + (f"; {proofs}" if proofs else "") + "." + note, **details)


def hsm_objects_evidence(listing: TokenListing, verdict: Verdict) -> HsmObjectsEvidence:
    """The object list as typed evidence: the verdict's own rows, and the token's self-description."""
    return HsmObjectsEvidence(
        objects=verdict.details["objects"],
        token=listing.facts.as_evidence() if listing.facts is not None else None,
        seen_without_login=verdict.details["seen_without_login"],
        problems=verdict.details["problems"])


@pytest.mark.claims("KEYS-HSM", "KEYS-NAMESPACED", "KEYS-JWT-HSM", "KEYS-TOKEN-KEY-HSM",
                    "KEYS-API-KEYS-HSM", "KEYS-DB-PASSWORD-ROTATION",
                    "KEYS-REDIS-PASSWORD-ROTATION", "REST-TOKENS-KEY-HSM")
@pytest.mark.access("api", "database", "hsm")
def check_hsm_custody(profile: TargetProfile, policy: Policy, known_secrets: KnownSecrets,
                      evidence: EvidenceRecorder, key_classes: KeyClasses) -> None:
    hsm = require_hsm(profile, evidence)
    ns = hsm.key_namespace
    snap = hsm_probe.snapshot(hsm, known_secrets, read_prefix=ns,
                              timeout_s=policy.timeouts.request_s, survey=True)
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
    verdict = hsm_custody_verdict(snap.listing, key_classes, ns, jwt_proof, ring_proof)
    evidence.attach("hsm-objects", hsm_objects_evidence(snap.listing, verdict))
    evidence.conclude(verdict)
