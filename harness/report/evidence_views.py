"""Evidence files → what the report shows: known shapes get their own view, anything else a
generic table or key/value view.

Evidence shapes come from the checks (``evidence.attach(...)`` in ``checks/*.py``),
written by other hands and free to change, so every recogniser here is
defensive: it recognises a shape only when the keys it reads are there with
the types it needs, and a recogniser that raises falls back to the generic
view with a note. The known shapes:

- ``tls_versions``: ``{"versions": [{"version", "accepted", ...}]}`` (transit.tls_versions);
- ``header_transcript``: ``{"samples": [{"url", "status", "headers"?, ...}]}``
  (transit.hsts, transit.security_headers, transit.http_redirect_only);
- ``hsm_objects``: ``[{"label", "class" | "sensitive" | "extractable", ...}]`` (keys.hsm_custody);
- ``rotation_timeline``: ``{"timeline": [{"t_s", "requests", "errors", "p50_ms", "p99_ms",
  "markers"}], "bucket_s"?, "before"?, "during"?, "after"?, "total"?}`` (keys.token_key_rotation);
- ``bcrypt_histogram``: a cost histogram under ``cost_histogram``, ``costs`` or
  ``bcrypt_costs`` (``{"12": 40, "10": 2}`` or ``[{"cost", "count"}]``), or a
  list of rows each with a ``cost`` (at_rest.password_hashes and friends). The
  policy's cost (``policy.bcrypt.cost``, or ``policy_cost`` / ``required_cost``
  in the file) marks the bars that break it.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup

from harness.report.layout import EvidenceFile
from harness.report.svg import HistogramBin, TimelinePoint, histogram_svg, timeline_svg

_counter = itertools.count(1)


@dataclass(frozen=True)
class EvidenceView:
    """How one evidence file is shown.

    Attributes:
        file: the evidence file.
        shape: the recognised shape (see the module docstring), or ``table``,
            ``keyvalue``, ``list``, ``scalar``, ``text``, ``problem``.
        data: what the template renders for that shape.
        chart: an inline SVG chart, for shapes that have one.
        rest: the file's other top-level keys, shown generically under the view.
        note: a remark on how the file is shown (e.g. a recogniser fell back).
    """

    file: EvidenceFile
    shape: str
    data: Any = None
    chart: Markup | None = None
    rest: dict[str, Any] = field(default_factory=dict)
    note: str = ""


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _dict_rows(value: Any) -> list[dict[str, Any]] | None:
    if isinstance(value, list) and value and all(isinstance(row, dict) for row in value):
        return value
    return None


def _rest(data: Mapping[str, Any], *used: str) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in used}


# --- recognisers: each returns a view or None ------------------------------------------------

def _tls_versions(file: EvidenceFile, data: Any, policy: Mapping[str, Any]) -> EvidenceView | None:
    if not isinstance(data, dict):
        return None
    rows = _dict_rows(data.get("versions"))
    if rows is None or not all("version" in r and "accepted" in r for r in rows):
        return None
    allowed = data.get("allowed_versions")
    table = []
    for row in rows:
        suites = row.get("cipher_suites")
        is_allowed = row.get("allowed")
        if is_allowed is None and isinstance(allowed, list):
            is_allowed = row["version"] in allowed
        accepted = row.get("accepted")
        if accepted and is_allowed is False:
            verdict = "✗ accepted, not allowed"
        elif accepted:
            verdict = "✓ accepted, allowed"
        elif row.get("tested") is False:
            verdict = "? not tested"
        else:
            verdict = "refused"
        table.append({"version": row["version"], "allowed": is_allowed, "tested": row.get("tested"),
                      "accepted": accepted, "verdict": verdict, "bad": bool(accepted and is_allowed is False),
                      "suites": suites if isinstance(suites, list) else [],
                      "error": row.get("error")})
    return EvidenceView(file, "tls_versions", table, rest=_rest(data, "versions"))


def _header_transcript(file: EvidenceFile, data: Any, policy: Mapping[str, Any]) -> EvidenceView | None:
    if not isinstance(data, dict):
        return None
    rows = _dict_rows(data.get("samples"))
    if rows is None or not all("url" in r for r in rows):
        return None
    exchanges = []
    for row in rows:
        headers: list[tuple[str, str]] = []
        raw = row.get("headers")
        missing: list[Any] = row["missing"] if isinstance(row.get("missing"), list) else []
        if isinstance(raw, dict):
            for name, values in raw.items():
                listed = values if isinstance(values, list) else [values]
                if not listed:
                    headers.append((str(name), "(absent) ✗ required" if name in missing else "(absent)"))
                headers += [(str(name), str(v)) for v in listed]
        elif isinstance(raw, list):
            # A bare list of values (transit.hsts): the values of the one header judged.
            headers += [("value", str(v)) for v in raw] or [("value", "(absent)")]
        if row.get("location"):
            headers.append(("location", str(row["location"])))
        exchanges.append({"url": str(row["url"]), "status": row.get("status"), "headers": headers,
                          "body_excerpt": row.get("body_excerpt"),
                          "other": _rest(row, "url", "status", "headers", "location", "body_excerpt")})
    return EvidenceView(file, "header_transcript", exchanges, rest=_rest(data, "samples"))


_HSM_COLUMNS = ("label", "class", "key_type", "id", "sensitive", "extractable", "always_sensitive",
                "never_extractable", "local", "private", "token", "value_len")
# Attribute values that weaken custody; the report marks them with text, not colour alone.
_HSM_RISKY = {"sensitive": False, "extractable": True, "always_sensitive": False, "never_extractable": False}


def _hsm_objects(file: EvidenceFile, data: Any, policy: Mapping[str, Any]) -> EvidenceView | None:
    rows = _dict_rows(data)
    if rows is None or not all("label" in r and ({"class", "sensitive", "extractable"} & r.keys())
                               for r in rows):
        return None
    extra = [k for k in dict.fromkeys(k for r in rows for k in r) if k not in _HSM_COLUMNS]
    columns = [c for c in _HSM_COLUMNS if any(c in r for r in rows)] + extra
    table = [[{"value": r.get(c), "risky": c in _HSM_RISKY and r.get(c) is _HSM_RISKY[c]} for c in columns]
             for r in rows]
    return EvidenceView(file, "hsm_objects", {"columns": columns, "rows": table})


def _rotation_timeline(file: EvidenceFile, data: Any, policy: Mapping[str, Any]) -> EvidenceView | None:
    if not isinstance(data, dict):
        return None
    rows = _dict_rows(data.get("timeline"))
    if rows is None or not all(_is_number(r.get("t_s")) and _is_number(r.get("requests")) for r in rows):
        return None

    def optional(value: Any) -> float | None:
        return float(value) if _is_number(value) else None

    points = [TimelinePoint(float(r["t_s"]), int(r["requests"]),
                            int(r["errors"]) if _is_number(r.get("errors")) else 0,
                            optional(r.get("p50_ms")), optional(r.get("p99_ms")),
                            tuple(str(m) for m in r.get("markers") or [] if isinstance(m, str)))
              for r in rows]
    raw_bucket: Any = data.get("bucket_s", 0)
    bucket = float(raw_bucket) if _is_number(raw_bucket) and raw_bucket > 0 else 0.0
    if not bucket:
        steps = [b.t_s - a.t_s for a, b in itertools.pairwise(points) if b.t_s > a.t_s]
        bucket = min(steps) if steps else 1.0
    phases = [{"phase": name, **data[name]} for name in ("before", "during", "after", "total")
              if isinstance(data.get(name), dict)]
    chart = timeline_svg(points, bucket, ident=f"timeline-{next(_counter)}",
                         title=f"Load timeline ({file.path})")
    return EvidenceView(file, "rotation_timeline", {"phases": phases, "points": points}, chart=chart,
                        rest=_rest(data, "timeline", "bucket_s", "before", "during", "after", "total"))


_HISTOGRAM_KEYS = ("cost_histogram", "bcrypt_costs", "costs")
_POLICY_COST_KEYS = ("policy_cost", "required_cost", "expected_cost", "min_cost")


def _cost_counts(value: Any) -> Counter[str] | None:
    if isinstance(value, dict) and value and all(_is_number(v) for v in value.values()):
        return Counter({str(k): int(v) for k, v in value.items()})
    rows = _dict_rows(value)
    if rows is not None and all("cost" in r for r in rows):
        if all(_is_number(r.get("count")) for r in rows):
            return Counter({str(r["cost"]): int(r["count"]) for r in rows})
        return Counter(str(r["cost"]) for r in rows)
    return None


def _bcrypt_histogram(file: EvidenceFile, data: Any, policy: Mapping[str, Any]) -> EvidenceView | None:
    counts, used = None, ""
    if isinstance(data, dict):
        for key in _HISTOGRAM_KEYS:
            counts = _cost_counts(data.get(key))
            if counts is not None:
                used = key
                break
    else:
        counts = _cost_counts(data)
    if not counts:
        return None
    required: Any = next((data[k] for k in _POLICY_COST_KEYS if isinstance(data, dict) and k in data), None)
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
    chart = histogram_svg(bins, title=f"bcrypt cost distribution ({file.path})", note=note,
                          ident=f"histogram-{next(_counter)}")
    rest = _rest(data, used) if isinstance(data, dict) else {}
    return EvidenceView(file, "bcrypt_histogram", {"bins": bins, "required": required}, chart=chart,
                        rest=rest)


Recogniser = Callable[[EvidenceFile, Any, Mapping[str, Any]], "EvidenceView | None"]
# Order matters: the most specific shapes first.
RECOGNISERS: dict[str, Recogniser] = {
    "rotation_timeline": _rotation_timeline,
    "tls_versions": _tls_versions,
    "bcrypt_histogram": _bcrypt_histogram,
    "hsm_objects": _hsm_objects,
    "header_transcript": _header_transcript,
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
    """The view of one evidence file: a known shape if one matches, else the generic view."""
    policy = policy or {}
    if file.kind in ("missing", "too-large", "unreadable"):
        return EvidenceView(file, "problem", note=file.problem)
    if file.kind == "text":
        return EvidenceView(file, "text", file.text, note=file.problem)
    note = ""
    for name, recognise in RECOGNISERS.items():
        try:
            view = recognise(file, file.data, policy)
        except Exception as exc:  # A surprising shape must never break the report.
            note = f"looked like {name} but could not be drawn ({type(exc).__name__}); shown as data"
            continue
        if view is not None:
            return view
    return EvidenceView(file, generic_shape(file.data), file.data, note=note)
