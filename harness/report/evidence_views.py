"""Evidence files → what the report shows: each kind of structured evidence gets its own view,
anything else a generic table or key/value view.

A file of a known kind carries a ``kind`` field (:mod:`harness.evidence_kinds`, one model per
kind); the view is chosen by it and drawn from the validated model, and a file that names a
kind but does not validate is shown as data, with a note. The kinds:

- ``tls_versions`` (transit.tls_versions): a table of protocol versions;
- ``header_transcript`` (transit.hsts, transit.security_headers, transit.http_redirect_only):
  each sampled exchange with its headers;
- ``hsm_objects`` (keys.hsm_custody): the token's objects, risky attributes marked;
- ``rotation_timeline`` (keys.token_key_rotation): the load chart and the phases' totals;
- ``bcrypt_histogram`` (at_rest.password_hashes): the cost histogram; the file's
  ``policy_cost`` (else the run's ``policy.bcrypt.cost``) marks the bars that break it.

A file without a known ``kind`` gets the generic view: no shape is guessed.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup
from pydantic import BaseModel

from harness.evidence_kinds import (
    DRAWN_KEYS,
    EVIDENCE_KIND,
    BcryptHistogramEvidence,
    HeaderTranscriptEvidence,
    HsmObjectsEvidence,
    RotationTimelineEvidence,
    TlsVersionsEvidence,
)
from harness.report.humanise import field_words, marker_words, number_words
from harness.report.layout import EvidenceFile
from harness.report.svg import HistogramBin, TimelinePoint, histogram_svg, timeline_svg

_counter = itertools.count(1)


@dataclass(frozen=True)
class EvidenceView:
    """How one evidence file is shown.

    Attributes:
        file: the evidence file.
        shape: the evidence's kind (see the module docstring), or ``table``,
            ``keyvalue``, ``list``, ``scalar``, ``text``, ``problem``.
        data: what the template renders for that shape.
        chart: an inline SVG chart, for shapes that have one.
        rest: the file's other top-level keys, shown generically under the view.
        note: a remark on how the file is shown (e.g. a kind's view fell back).
    """

    file: EvidenceFile
    shape: str
    data: Any = None
    chart: Markup | None = None
    rest: dict[str, Any] = field(default_factory=dict)
    note: str = ""


def _dict_rows(value: Any) -> list[dict[str, Any]] | None:
    if isinstance(value, list) and value and all(isinstance(row, dict) for row in value):
        return value
    return None


def _fields(model: BaseModel) -> dict[str, Any]:
    """The keys the file gave for ``model`` (as written), declared and extra alike."""
    return model.model_dump(mode="json", by_alias=True, exclude_unset=True)


# --- one view per kind ------------------------------------------------------------------------

def _tls_versions(file: EvidenceFile, evidence: TlsVersionsEvidence, policy: Mapping[str, Any]
                  ) -> tuple[Any, Markup | None]:
    allowed = evidence.allowed_versions
    table = []
    for row in evidence.versions:
        is_allowed = row.allowed
        if is_allowed is None and allowed is not None:
            is_allowed = row.version in allowed
        accepted = row.accepted
        if accepted and is_allowed is False:
            verdict = "✗ accepted, not allowed"
        elif accepted:
            verdict = "✓ accepted, allowed"
        elif row.tested is False:
            verdict = "? not tested"
        else:
            verdict = "refused"
        table.append({"version": row.version, "allowed": is_allowed, "tested": row.tested,
                      "accepted": accepted, "verdict": verdict, "bad": bool(accepted and is_allowed is False),
                      "suites": list(row.cipher_suites), "error": row.error})
    return table, None


def _header_transcript(file: EvidenceFile, evidence: HeaderTranscriptEvidence, policy: Mapping[str, Any]
                       ) -> tuple[Any, Markup | None]:
    exchanges = []
    for row in evidence.samples:
        headers: list[tuple[str, str]] = []
        raw = row.headers
        if isinstance(raw, dict):
            for name, values in raw.items():
                listed = values if isinstance(values, list) else [values]
                if not listed:
                    headers.append((name, "(absent) ✗ required" if name in row.missing else "(absent)"))
                headers += [(name, str(v)) for v in listed]
        elif isinstance(raw, list):
            # A bare list of values (transit.hsts): the values of the one header judged.
            headers += [("value", str(v)) for v in raw] or [("value", "(absent)")]
        if row.location:
            headers.append(("location", row.location))
        other = {k: v for k, v in _fields(row).items()
                 if k not in ("url", "status", "headers", "location", "body_excerpt")}
        exchanges.append({"url": row.url, "status": row.status, "headers": headers,
                          "body_excerpt": row.body_excerpt, "other": other})
    return exchanges, None


# How each custody attribute reads when true and when false, and the value that weakens custody
# (the report marks it with text, not colour alone).
_HSM_ATTRIBUTES: dict[str, tuple[str, str, bool | None]] = {
    "token": ("stored on the token", "a session object, not stored", False),
    "private": ("private", "public: readable by any session", False),
    "sensitive": ("sensitive", "not sensitive", False),
    "extractable": ("extractable", "not extractable", True),
    "always_sensitive": ("always sensitive", "not always sensitive", False),
    "never_extractable": ("never extractable", "was extractable once", False),
    "local": ("made on the token", "imported", None),
    "modifiable": ("modifiable", "not modifiable", None),
    "readable_without_login": ("readable without login", "needs login", True),
}
_HSM_WHAT = ("class", "key_type", "key_class", "value_len", "key_bits", "id", "same_material_as",
             "value_read", "key_shaped", "fingerprint_method")


def _hsm_what(fields: dict[str, Any]) -> list[str]:
    """What an object is, in words: its class and type, key class, length, and further attributes."""
    # PKCS#11 names (SECRET_KEY, GENERIC_SECRET) in words: "secret key (generic secret)".
    named = [str(fields[k]).replace("_", " ").lower() for k in ("class", "key_type") if fields.get(k)]
    what = [named[0] + (f" ({named[1]})" if len(named) > 1 else "")] if named else []
    if fields.get("key_class"):
        what.append(f"key class {fields['key_class']}")
    if isinstance(fields.get("value_len"), int):
        what.append(f"{number_words(fields['value_len'])} bytes")
    if isinstance(fields.get("key_bits"), int):
        what.append(f"{number_words(fields['key_bits'])} bits")
    if fields.get("same_material_as"):
        what.append("same key material as " + ", ".join(map(str, fields["same_material_as"])))
    if fields.get("key_shaped") is True:
        what.append("its value is shaped like a raw key")
    shown = {*_HSM_WHAT, *_HSM_ATTRIBUTES, "label", "problems"}
    what += [f"{field_words(k)}: {v}" for k, v in fields.items()
             if k not in shown and v not in (None, "", [], {})]
    return what


def _hsm_objects(file: EvidenceFile, evidence: HsmObjectsEvidence, policy: Mapping[str, Any]
                 ) -> tuple[Any, Markup | None]:
    rows = []
    for obj in evidence.objects:
        fields = _fields(obj)
        attributes = []
        for name, (yes, no, risky) in _HSM_ATTRIBUTES.items():
            value = fields.get(name)
            if isinstance(value, bool):
                weakens = risky is not None and value is risky
                attributes.append({"words": yes if value else no, "risky": weakens})
        rows.append({"label": obj.label, "what": _hsm_what(fields), "attributes": attributes,
                     "problems": list(obj.problems)})
    return {"rows": rows}, None


def _rotation_timeline(file: EvidenceFile, evidence: RotationTimelineEvidence, policy: Mapping[str, Any]
                       ) -> tuple[Any, Markup | None]:
    # A marker may carry a command's whole output: the chart and table show its words only.
    points = [TimelinePoint(b.t_s, b.requests, b.errors, b.p50_ms, b.p99_ms,
                            tuple(marker_words(m) for m in b.markers)) for b in evidence.timeline]
    bucket = evidence.bucket_s if evidence.bucket_s > 0 else 0.0
    if not bucket:
        steps = [b.t_s - a.t_s for a, b in itertools.pairwise(points) if b.t_s > a.t_s]
        bucket = min(steps) if steps else 1.0
    windows = {"before": evidence.before, "during": evidence.during, "after": evidence.after,
               "total": evidence.total}
    phases = [{"phase": name, **window} for name, window in windows.items() if window is not None]
    chart = timeline_svg(points, bucket, ident=f"timeline-{next(_counter)}",
                         title=f"Load timeline ({file.name})")
    return {"phases": phases, "points": points}, chart


def _bcrypt_histogram(file: EvidenceFile, evidence: BcryptHistogramEvidence, policy: Mapping[str, Any]
                      ) -> tuple[Any, Markup | None]:
    counts = evidence.cost_histogram
    required: Any = evidence.policy_cost
    if required is None and isinstance(policy.get("bcrypt"), dict):
        required = policy["bcrypt"].get("cost")

    def order(label: str) -> tuple[int, float, str]:
        try:
            return (0, float(label), label)
        except ValueError:
            return (1, 0.0, label)

    bins = []
    for label in sorted(counts, key=order):
        try:
            flagged = required is not None and float(label) != float(required)
        except (TypeError, ValueError):
            flagged = True  # "None", "plaintext", "sha256": not a bcrypt cost at all.
        bins.append(HistogramBin(f"cost {label}" if order(label)[0] == 0 else label, counts[label], flagged))
    note = (f"Policy: cost {required}; bars marked ✗ (hatched) differ from it." if required is not None
            else "No policy cost known.")
    chart = histogram_svg(bins, title=f"bcrypt cost distribution ({file.name})", note=note,
                          ident=f"histogram-{next(_counter)}")
    return {"bins": bins, "required": required}, chart


View = Callable[[EvidenceFile, Any, Mapping[str, Any]], tuple[Any, "Markup | None"]]
#: The view of each kind of evidence (:data:`harness.evidence_kinds.EvidenceKind`).
VIEWS: dict[str, View] = {
    "tls_versions": _tls_versions,
    "header_transcript": _header_transcript,
    "hsm_objects": _hsm_objects,
    "rotation_timeline": _rotation_timeline,
    "bcrypt_histogram": _bcrypt_histogram,
}


def generic_shape(data: Any) -> str:
    """The generic view for data no recogniser claimed."""
    if _dict_rows(data) is not None:
        return "table"
    if isinstance(data, dict):
        return "keyvalue"
    if isinstance(data, list):
        return "list"
    return "scalar"


def view_evidence(file: EvidenceFile, policy: Mapping[str, Any] | None = None) -> EvidenceView:
    """The view of one evidence file: its kind's view, else the generic view."""
    policy = policy or {}
    if file.kind in ("missing", "too-large", "unreadable"):
        return EvidenceView(file, "problem", note=file.problem)
    if file.kind == "text":
        return EvidenceView(file, "text", file.text, note=file.problem)
    data = file.data
    kind = data.get("kind") if isinstance(data, dict) else None
    if not (isinstance(kind, str) and kind in VIEWS):
        return EvidenceView(file, generic_shape(data), data)
    try:
        drawn, chart = VIEWS[kind](file, EVIDENCE_KIND.validate_python(data), policy)
    except Exception as exc:  # A file that does not fit its kind must never break the report.
        note = f"looked like {kind} but could not be drawn ({type(exc).__name__}); shown as data"
        return EvidenceView(file, generic_shape(data), data, note=note)
    rest = {k: v for k, v in data.items() if k not in ("kind", *DRAWN_KEYS[kind])}
    return EvidenceView(file, kind, drawn, chart=chart, rest=rest)
