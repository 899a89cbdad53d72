"""Evidence recognisers: known shapes are recognised, anything else falls back, nothing crashes."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from harness.report import evidence_views
from harness.report.evidence_views import view_evidence
from harness.report.html import _environment
from harness.report.layout import EvidenceFile


def _json(data: Any, name: str = "x.json") -> EvidenceFile:
    return EvidenceFile(f"evidence/c/{name}", name, 10, "json", data=data)


def test_known_shapes_are_recognised() -> None:
    assert view_evidence(_json({"versions": [{"version": "TLSv1.3", "accepted": True}]})).shape == "tls_versions"
    assert view_evidence(_json({"samples": [{"url": "https://a/", "status": 200}]})).shape == "header_transcript"
    assert view_evidence(_json([{"label": "k", "sensitive": True}])).shape == "hsm_objects"
    assert view_evidence(_json({"timeline": [{"t_s": 0, "requests": 3}]})).shape == "rotation_timeline"
    assert view_evidence(_json({"cost_histogram": {"12": 4}})).shape == "bcrypt_histogram"
    assert view_evidence(_json([{"cost": 12}, {"cost": 10}, {"cost": 12}])).shape == "bcrypt_histogram"


def test_near_misses_fall_back_to_generic_views() -> None:
    assert view_evidence(_json({"versions": ["TLSv1.3"]})).shape == "keyvalue"
    assert view_evidence(_json({"samples": [{"status": 200}]})).shape == "keyvalue"
    assert view_evidence(_json([{"name": "k"}])).shape == "table"
    assert view_evidence(_json({"timeline": [{"t_s": "soon", "requests": 1}]})).shape == "keyvalue"
    assert view_evidence(_json([1, 2])).shape == "list"
    assert view_evidence(_json(42)).shape == "scalar"


def test_a_bcrypt_histogram_flags_costs_that_break_the_policy() -> None:
    view = view_evidence(_json({"cost_histogram": {"12": 40, "10": 3, "plaintext": 1}}),
                         {"bcrypt": {"cost": 12}})

    flagged = {b.label: b.flagged for b in view.data["bins"]}
    assert flagged == {"cost 10": True, "cost 12": False, "plaintext": True}


def test_a_recogniser_that_raises_falls_back_with_a_note(monkeypatch: Any) -> None:
    def explode(*args: Any) -> None:
        raise KeyError("surprise")

    monkeypatch.setitem(evidence_views.RECOGNISERS, "tls_versions", explode)

    view = view_evidence(_json({"versions": [{"version": "TLSv1.3", "accepted": True}]}))

    assert view.shape == "keyvalue"
    assert "looked like tls_versions but could not be drawn (KeyError)" in view.note


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["t_s", "requests", "errors", "p50_ms", "markers", "version", "accepted",
                                       "url", "headers", "samples", "timeline", "versions", "label", "cost",
                                       "count", "cost_histogram", "sensitive", "bucket_s", "x"]), children,
                      max_size=5),
    max_leaves=25)


_VIEW = _environment().from_string('{% import "evidence.html.j2" as ev %}{{ ev.view(v) }}')


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_any_json_renders_without_crashing(data: Any) -> None:
    view = view_evidence(_json(data), {"bcrypt": {"cost": 12}})

    html = _VIEW.render(v=view)

    assert "evidence/c/x.json" in html
    assert "<script" not in html


def test_the_password_hashes_evidence_of_at_rest_draws_its_histogram() -> None:
    # The shape of at_rest.password_hashes' details: the policy cost travels in the file.
    data = {"column": "users.password_hash", "rows": 43, "schemes": {"bcrypt": 43},
            "cost_histogram": {"10": 3, "12": 40}, "policy_cost": 11, "canary_match": "match",
            "examples": ["row 7: cost 10"]}

    view = view_evidence(_json(data, "password-hashes.json"), {"bcrypt": {"cost": 12}})

    assert view.shape == "bcrypt_histogram"
    assert view.data["required"] == 11
    assert all(b.flagged for b in view.data["bins"])
    assert "cost_histogram" not in view.rest and view.rest["policy_cost"] == 11
