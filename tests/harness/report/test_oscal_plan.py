"""OSCAL: the assessment plan the results import is in the bundle, and each observation carries its
own collection time."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from harness.report.layout import load_results
from harness.report.oscal import PLAN_FILE, collection_times, write_oscal


def test_the_imported_plan_is_in_the_bundle_and_reads_back(fault_run: Path) -> None:
    ap = pytest.importorskip("trestle.oscal.assessment_plan")
    ar = pytest.importorskip("trestle.oscal.assessment_results")
    run = load_results(fault_run)

    results = ar.AssessmentResults.oscal_read(write_oscal(run, fault_run))

    assert results.import_ap.href == PLAN_FILE
    plan = ap.AssessmentPlan.oscal_read(fault_run / results.import_ap.href)
    activities = {a.title for a in plan.local_definitions.activities}
    assert activities == {r.check_id for r in run.results}
    assert (fault_run / plan.import_ssp.href).is_file()  # promises.md, written by the SARIF export


def test_each_observation_has_its_own_collection_time(fault_run: Path) -> None:
    ar = pytest.importorskip("trestle.oscal.assessment_results")
    run = load_results(fault_run)
    # Given evidence files written at different moments of the run ...
    with_evidence = [r for r in run.results if r.evidence]
    for index, result in enumerate(with_evidence):
        stamp = (run.started_at + dt.timedelta(seconds=5 + index)).timestamp()
        for relative in result.evidence:
            if (fault_run / relative).exists():
                os.utime(fault_run / relative, (stamp, stamp))

    # ... then the observations' collected times follow them, each within the run.
    observations = ar.AssessmentResults.oscal_read(write_oscal(run, fault_run)).results[0].observations
    collected = [o.collected for o in observations]
    assert len(set(collected)) > len(collected) // 2
    assert all(run.started_at <= when <= run.finished_at for when in collected)
    bases = {p.value for o in observations for p in o.props if p.name == "collected-basis"}
    assert bases <= {"evidence-file-time", "run-order-estimate"} and "evidence-file-time" in bases


def test_without_evidence_the_time_is_the_run_order_estimate(fault_run: Path) -> None:
    run = load_results(fault_run)

    times = collection_times(run, None)

    assert [basis for _, basis in times] == ["run-order-estimate"] * len(run.results)
    assert [when for when, _ in times] == sorted(when for when, _ in times)
