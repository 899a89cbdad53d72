"""calibration.json's rows carry their kind (clean, fault, violation); older files still read."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from harness.outcomes import Outcome
from harness.report.calibration import Calibration, DetectionRow, calibration_schema, load_calibration

WHEN = dt.datetime(2026, 12, 7, tzinfo=dt.UTC)


def test_a_file_without_kinds_reads_its_clean_rows_as_clean_and_the_rest_as_faults(tmp_path: Path) -> None:
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps({"schema_version": 1, "tool_version": "0", "created_at": WHEN.isoformat(),
                                "rows": [{"fault": "clean", "expected_check": "transit.hsts",
                                          "expected_outcome": "PASS", "observed_outcome": "PASS"},
                                         {"fault": "hsts-missing", "expected_check": "transit.hsts",
                                          "observed_outcome": "FAIL"}]}))
    calibration = load_calibration(path)
    assert calibration is not None
    assert [row.kind for row in calibration.rows] == ["clean", "fault"]


def test_rows_by_kind_and_runs_with_unexpected_failures() -> None:
    calibration = Calibration(created_at=WHEN, rows=(
        DetectionRow(fault="clean", kind="clean", expected_check="transit.hsts",
                     expected_outcome=Outcome.PASS, observed_outcome=Outcome.PASS),
        DetectionRow(fault="hsts-missing", expected_check="transit.hsts", observed_outcome=Outcome.FAIL),
        DetectionRow(fault="row-token-plaintext", kind="violation", expected_check="at_rest.tokens_fernet",
                     observed_outcome=Outcome.FAIL, other_failures=("at_rest.data_inventory",)),
        DetectionRow(fault="row-token-plaintext", kind="violation", expected_check="at_rest.plaintext_sweep",
                     observed_outcome=Outcome.PASS, other_failures=("at_rest.data_inventory",)),
    ))
    assert [row.fault for row in calibration.of_kind("violation")] == ["row-token-plaintext"] * 2
    assert [row.fault for row in calibration.of_kind("fault")] == ["hsts-missing"]
    # One entry per run, not per row.
    assert [(row.kind, row.fault) for row in calibration.unexpected_failures] == [
        ("violation", "row-token-plaintext")]
    assert [row.expected_check for row in calibration.missed] == ["at_rest.plaintext_sweep"]
    # The kind survives the round trip through JSON.
    again = Calibration.model_validate_json(calibration.model_dump_json())
    assert [row.kind for row in again.rows] == ["clean", "fault", "violation", "violation"]


def test_the_schema_names_the_three_kinds() -> None:
    kind = calibration_schema()["$defs"]["DetectionRow"]["properties"]["kind"]
    assert kind["enum"] == ["clean", "fault", "violation"]


def test_the_detection_matrix_names_each_row_s_kind(fault_run: Path) -> None:
    from harness.report.html import write_report
    from harness.report.layout import CALIBRATION_JSON

    calibration = Calibration(created_at=WHEN, rows=(
        DetectionRow(fault="hsts-missing", expected_check="transit.hsts", observed_outcome=Outcome.FAIL),
        DetectionRow(fault="edge-reload-tls12", kind="violation", description="TLS 1.2 after a reload",
                     expected_check="transit.tls_versions", observed_outcome=Outcome.FAIL),
    ))
    (fault_run / CALIBRATION_JSON).write_text(calibration.model_dump_json(indent=2))
    html = write_report(fault_run, now=WHEN).read_text()
    matrix = html[html.index('id="matrix-h"'):]
    assert "each violation (applied to the running service" in matrix
    assert 'edge-reload-tls12</span> <span class="muted">(violation)' in matrix
    assert 'hsts-missing</span> <span class="muted">(fault)' in matrix
    assert "2 of 2 detected" in matrix
