"""The kinds of structured evidence the report draws in their own way.

A check that records one of these builds its model and attaches it
(``evidence.attach("tls-versions", TlsVersionsEvidence(...))``); the file then
carries its ``kind``, and the report chooses the view by that field alone
(:mod:`harness.report.evidence_views`). Each model allows further keys: they are
written with the rest and shown generically under the view. A file without a
``kind`` is data, shown generically: its shape is never guessed.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


class _Open(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow", populate_by_name=True)


class TlsVersionRow(_Open):
    """One protocol version as the scan saw it.

    Attributes:
        version: e.g. ``TLSv1.3``.
        accepted: whether the edge completed a handshake with it (None: unknown).
        allowed: whether the policy allows it (None: judged from ``allowed_versions``).
        tested: whether the scan of this version completed.
        cipher_suites: the suites accepted with it.
        error: why the scan of this version did not complete.
    """

    version: str
    accepted: bool | None
    allowed: bool | None = None
    tested: bool | None = None
    cipher_suites: tuple[str, ...] = ()
    error: str | None = None


class TlsVersionsEvidence(_Open):
    """Every protocol version tried against the edge (transit.tls_versions).

    Attributes:
        versions: one row per version.
        allowed_versions: the policy's allowed versions.
    """

    kind: Literal["tls_versions"] = "tls_versions"
    versions: tuple[TlsVersionRow, ...]
    allowed_versions: tuple[str, ...] | None = None


class HttpExchange(_Open):
    """One sampled HTTP answer.

    Attributes:
        url: what was requested.
        status: the HTTP status (None: no answer).
        headers: header name → its values; or the values of the one header judged.
        missing: required headers the answer lacks.
        location: the redirect target, if any.
        body_excerpt: the start of the body, if kept.
    """

    url: str
    status: int | None = None
    headers: dict[str, list[str] | str] | list[str] | None = None
    missing: tuple[str, ...] = ()
    location: str | None = None
    body_excerpt: str | None = None


class HeaderTranscriptEvidence(_Open):
    """The edge's answers to the sampled paths (transit.hsts, .security_headers, .http_redirect_only).

    Attributes:
        samples: one exchange per sampled path.
    """

    kind: Literal["header_transcript"] = "header_transcript"
    samples: tuple[HttpExchange, ...]


class HsmObject(_Open):
    """One object on the HSM token: its label and attributes, never its value.

    Attributes:
        label, object_class (``class``), key_type, id: what it is.
        token, private, sensitive, extractable, always_sensitive, never_extractable, local:
            its PKCS#11 attributes (None: not readable).
        value_len: length of its value in bytes.
        modifiable, key_bits: ``CKA_MODIFIABLE``; an RSA key's modulus bits.
        fingerprint_method: how its material was fingerprinted (never the fingerprint).
        value_read, key_shaped: whether its value could be read; whether a data object's
            value has the length and entropy of a raw key.
        key_class: the key class it belongs to (None: none).
        same_material_as: labels holding the same key material.
        readable_without_login: whether a session without the PIN saw it (None: not looked).
        problems: what the custody check found wrong with it.
    """

    label: str
    object_class: str | None = Field(default=None, alias="class")
    key_type: str | None = None
    id: str | None = None
    token: bool | None = None
    private: bool | None = None
    sensitive: bool | None = None
    extractable: bool | None = None
    always_sensitive: bool | None = None
    never_extractable: bool | None = None
    local: bool | None = None
    value_len: int | None = None
    modifiable: bool | None = None
    key_bits: int | None = None
    fingerprint_method: str | None = None
    value_read: bool | None = None
    key_shaped: bool | None = None
    key_class: str | None = None
    same_material_as: tuple[str, ...] = ()
    readable_without_login: bool | None = None
    problems: tuple[str, ...] = ()


class HsmObjectsEvidence(_Open):
    """Every object on the token, as found (keys.hsm_custody).

    Attributes:
        objects: sorted by label.
        token: what the slot and token say about themselves (manufacturer, model, flags).
        seen_without_login: labels a session without the PIN sees (None: not looked).
        problems: the custody problems, each naming its object.
    """

    kind: Literal["hsm_objects"] = "hsm_objects"
    objects: tuple[HsmObject, ...]
    token: dict[str, Any] | None = None
    seen_without_login: tuple[str, ...] | None = None
    problems: tuple[str, ...] = ()


class TimelineBucket(_Open):
    """The load client's calls in one time bucket.

    Attributes:
        t_s: start of the bucket, seconds into the load.
        requests, errors: calls made and failed.
        p50_ms, p99_ms: latency percentiles (None when no call finished).
        markers: events in the bucket (e.g. ``rotation started``).
    """

    t_s: float
    requests: int
    errors: int = 0
    p50_ms: float | None = None
    p99_ms: float | None = None
    markers: tuple[str, ...] = ()


class RotationTimelineEvidence(_Open):
    """Live traffic around a key rotation (keys.token_key_rotation).

    Attributes:
        timeline: one bucket per ``bucket_s`` seconds.
        bucket_s: the bucket width (0: taken from the timeline's steps).
        before, during, after, total: the load's totals in each window (``LoadWindow.as_evidence``).
    """

    kind: Literal["rotation_timeline"] = "rotation_timeline"
    timeline: tuple[TimelineBucket, ...]
    bucket_s: float = 0.0
    before: dict[str, Any] | None = None
    during: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    total: dict[str, Any] | None = None


class BcryptHistogramEvidence(_Open):
    """How many stored hashes use each bcrypt cost (at_rest.password_hashes).

    Attributes:
        cost_histogram: cost (or a scheme that is not bcrypt, e.g. ``plaintext``) → count.
        policy_cost: the cost the policy requires (None: the run's policy says).
    """

    kind: Literal["bcrypt_histogram"] = "bcrypt_histogram"
    cost_histogram: dict[str, int]
    policy_cost: int | None = None


EvidenceKind = Annotated[
    TlsVersionsEvidence | HeaderTranscriptEvidence | HsmObjectsEvidence | RotationTimelineEvidence
    | BcryptHistogramEvidence, Field(discriminator="kind")]
EVIDENCE_KIND: TypeAdapter[EvidenceKind] = TypeAdapter(EvidenceKind)
#: Each kind and the top-level keys its view draws (the file's other keys are shown generically).
DRAWN_KEYS: dict[str, tuple[str, ...]] = {
    "tls_versions": ("versions",),
    "header_transcript": ("samples",),
    "hsm_objects": ("objects",),
    "rotation_timeline": ("timeline", "bucket_s", "before", "during", "after", "total"),
    "bcrypt_histogram": ("cost_histogram",),
}

