"""Evidence views: each kind is drawn by its view (chosen by the file's ``kind``, never guessed
from a shape), anything else falls back to a generic view, nothing crashes."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from harness.evidence import EvidenceRecorder
from harness.evidence_kinds import (
    BcryptHistogramEvidence,
    HeaderTranscriptEvidence,
    HsmObject,
    HsmObjectsEvidence,
    HttpExchange,
    RotationTimelineEvidence,
    TimelineBucket,
    TlsVersionRow,
    TlsVersionsEvidence,
)
from harness.redaction import KnownSecrets
from harness.report import evidence_views
from harness.report.evidence_views import view_evidence
from harness.report.html import _environment
from harness.report.layout import EvidenceFile


def _json(data: Any, name: str = "x.json") -> EvidenceFile:
    return EvidenceFile(f"evidence/c/{name}", name, 10, "json", data=data)


def test_files_without_a_kind_are_data_whatever_their_shape() -> None:
    # The shapes the kinds' views draw, without a kind: nothing is guessed from them
    assert view_evidence(_json({"versions": [{"version": "TLSv1.3", "accepted": True}]})).shape == "keyvalue"
    assert view_evidence(_json({"samples": [{"url": "https://a/", "status": 200}]})).shape == "keyvalue"
    assert view_evidence(_json([{"label": "k", "sensitive": True}])).shape == "table"
    assert view_evidence(_json({"timeline": [{"t_s": 0, "requests": 3}]})).shape == "keyvalue"
    assert view_evidence(_json({"cost_histogram": {"12": 4}})).shape == "keyvalue"
    assert view_evidence(_json([{"cost": 12}, {"cost": 10}, {"cost": 12}])).shape == "table"


def test_near_misses_fall_back_to_generic_views() -> None:
    assert view_evidence(_json({"versions": ["TLSv1.3"]})).shape == "keyvalue"
    assert view_evidence(_json({"samples": [{"status": 200}]})).shape == "keyvalue"
    assert view_evidence(_json([{"name": "k"}])).shape == "table"
    assert view_evidence(_json({"timeline": [{"t_s": "soon", "requests": 1}]})).shape == "keyvalue"
    assert view_evidence(_json([1, 2])).shape == "list"
    assert view_evidence(_json(42)).shape == "scalar"


def test_a_bcrypt_histogram_flags_costs_that_break_the_policy() -> None:
    view = view_evidence(_json({"kind": "bcrypt_histogram", "cost_histogram": {"12": 40, "10": 3, "plaintext": 1}}),
                         {"bcrypt": {"cost": 12}})

    flagged = {b.label: b.flagged for b in view.data["bins"]}
    assert flagged == {"cost 10": True, "cost 12": False, "plaintext": True}


def test_a_recogniser_that_raises_falls_back_with_a_note(monkeypatch: Any) -> None:
    def explode(*args: Any) -> None:
        raise KeyError("surprise")

    monkeypatch.setitem(evidence_views.VIEWS, "tls_versions", explode)

    view = view_evidence(_json({"kind": "tls_versions", "versions": [{"version": "TLSv1.3", "accepted": True}]}))

    assert view.shape == "keyvalue"
    assert "looked like tls_versions but could not be drawn (KeyError)" in view.note


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8)
    | st.sampled_from(sorted(evidence_views.VIEWS)),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["kind", "t_s", "requests", "errors", "p50_ms", "markers", "version",
                                       "accepted", "url", "headers", "samples", "timeline", "versions",
                                       "label", "cost", "count", "cost_histogram", "sensitive", "bucket_s",
                                       "objects", "x"]), children, max_size=5),
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
    # The shape of at_rest.password_hashes' details, with its kind: the policy cost travels in the file.
    data = {"kind": "bcrypt_histogram", "column": "users.password_hash", "rows": 43, "schemes": {"bcrypt": 43},
            "cost_histogram": {"10": 3, "12": 40}, "policy_cost": 11, "canary_match": "match",
            "examples": ["row 7: cost 10"]}

    view = view_evidence(_json(data, "password-hashes.json"), {"bcrypt": {"cost": 12}})

    assert view.shape == "bcrypt_histogram"
    assert view.data["required"] == 11
    assert all(b.flagged for b in view.data["bins"])
    assert "cost_histogram" not in view.rest and view.rest["policy_cost"] == 11


# --- typed evidence: the file's kind chooses the view ------------------------------------------

TYPED = [
    TlsVersionsEvidence(versions=(TlsVersionRow(version="TLSv1.2", accepted=True, allowed=False),
                                  TlsVersionRow(version="TLSv1.3", accepted=True, allowed=True)),
                        allowed_versions=("TLSv1.3",), target="edge"),
    HeaderTranscriptEvidence(samples=(HttpExchange(url="https://a/", status=200,
                                                   headers={"content-security-policy": []},
                                                   missing=("content-security-policy",)),)),
    HsmObjectsEvidence(objects=(HsmObject(label="votriz/jwt", object_class="SECRET_KEY", sensitive=True,
                                          extractable=True),)),
    RotationTimelineEvidence(timeline=(TimelineBucket(t_s=0, requests=3), TimelineBucket(t_s=0.5, requests=4,
                                                                                       errors=1)),
                             bucket_s=0.5, during={"requests": 7, "errors": 1}),
    BcryptHistogramEvidence(cost_histogram={"12": 40, "10": 3}, policy_cost=12, column="users.password_hash"),
]


def _attached(tmp_path: Any, model: Any) -> EvidenceFile:
    # Given a check that attaches its evidence model, as the recorder writes it
    path = EvidenceRecorder("c.x", tmp_path, KnownSecrets()).attach("e", model)
    return _json(json.loads(path.read_text()), path.name)


def test_each_kind_is_written_with_its_kind_and_drawn_by_its_view(tmp_path: Any) -> None:
    for model in TYPED:
        file = _attached(tmp_path, model)
        assert file.data["kind"] == model.kind
        view = view_evidence(file, {"bcrypt": {"cost": 99}})
        assert view.shape == model.kind and view.note == ""
        assert "kind" not in view.rest
    # What the check gave, as the model names it, and its kind: nothing more
    assert _attached(tmp_path, TYPED[2]).data == {"kind": "hsm_objects", "objects": [
        {"label": "votriz/jwt", "class": "SECRET_KEY", "sensitive": True, "extractable": True}]}


def test_typed_views_draw_what_the_model_says(tmp_path: Any) -> None:
    tls, headers, hsm, timeline, bcrypt = (view_evidence(_attached(tmp_path, m)) for m in TYPED)
    assert [row["verdict"] for row in tls.data] == ["✗ accepted, not allowed", "✓ accepted, allowed"]
    assert tls.rest["target"] == "edge" and tls.rest["allowed_versions"] == ["TLSv1.3"]
    assert headers.data[0]["headers"] == [("content-security-policy", "(absent) ✗ required")]
    # The token's objects: what each is and its custody attributes in words, the weakening one marked
    assert hsm.data["rows"][0]["what"] == ["secret key"]
    assert {"words": "extractable", "risky": True} in hsm.data["rows"][0]["attributes"]
    assert {"words": "sensitive", "risky": False} in hsm.data["rows"][0]["attributes"]
    assert timeline.chart is not None and timeline.data["phases"] == [{"phase": "during", "requests": 7,
                                                                       "errors": 1}]
    # The file's policy cost wins over the run's policy
    assert bcrypt.data["required"] == 12
    assert {b.label: b.flagged for b in bcrypt.data["bins"]} == {"cost 10": True, "cost 12": False}
    assert bcrypt.rest == {"policy_cost": 12, "column": "users.password_hash"}


def test_the_kind_chooses_the_view_not_the_shape() -> None:
    # A file that says it is a histogram is not drawn as a TLS table, whatever keys it carries
    data = {"kind": "bcrypt_histogram", "cost_histogram": {"12": 1},
            "versions": [{"version": "TLSv1.3", "accepted": True}]}
    assert view_evidence(_json(data)).shape == "bcrypt_histogram"
    # And a file of a kind no view knows is shown as data
    assert view_evidence(_json({"kind": "nothing_known", "versions": ["x"]})).shape == "keyvalue"


def test_a_file_that_does_not_fit_its_kind_is_shown_as_data_with_a_note() -> None:
    view = view_evidence(_json({"kind": "rotation_timeline", "timeline": [{"t_s": "soon"}]}))
    assert view.shape == "keyvalue"
    assert "looked like rotation_timeline but could not be drawn (ValidationError)" in view.note

