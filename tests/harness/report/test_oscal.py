"""The OSCAL assessment-results export, built with compliance-trestle's models and read back."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from harness.report.layout import load_results
from harness.report.oscal import OscalUnavailable, build_assessment_results, write_oscal


def test_the_export_reads_back_as_oscal_assessment_results(fault_run: Path) -> None:
    ar = pytest.importorskip("trestle.oscal.assessment_results")
    run = load_results(fault_run)

    path = write_oscal(run, fault_run)
    document = ar.AssessmentResults.oscal_read(path)

    assert document is not None
    result = document.results[0]
    assert len(result.findings) == len(run.claims)
    assert len(result.observations) == len(run.results)
    states = {f.target.target_id: (f.target.status.state.value, f.target.status.reason)
              for f in result.findings}
    assert states["TRANSIT-TLS13"] == ("not-satisfied", "fail")
    assert states["KEYS-HSM"] == ("satisfied", "pass")
    assert states["OVERVIEW-NO-PLAINTEXT"] == ("not-satisfied", "other")
    hrefs = [e.href for o in result.observations for e in (o.relevant_evidence or [])]
    assert "evidence/transit.tls_versions/tls-versions.json" in hrefs


def test_the_same_run_gives_the_same_document(fault_run: Path) -> None:
    pytest.importorskip("trestle")
    run = load_results(fault_run)

    first = json.loads(build_assessment_results(run).oscal_serialize_json())
    second = json.loads(build_assessment_results(run).oscal_serialize_json())

    assert first == second


def test_without_trestle_the_export_says_what_to_install(fault_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "trestle.oscal", None)

    with pytest.raises(OscalUnavailable, match=r"votriz-audit\[report\]"):
        build_assessment_results(load_results(fault_run))
