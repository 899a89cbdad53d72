"""The SARIF export meets what GitHub code scanning's upload enforces, on a run with FAIL and ERROR
results: every result has a physical location (the promise's line in promises.md, which the bundle
carries), every rule has help text (the promise's words), FAIL is an error and ERROR a warning, and
the file stays within GitHub's limits."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from harness.outcomes import Outcome
from harness.report.layout import load_results
from harness.report.sarif import PROMISES_MD, write_sarif

# GitHub's documented limits for one SARIF upload.
MAX_GZIP_BYTES = 10 << 20
MAX_RESULTS_PER_RUN = 25_000
MAX_RULES_PER_RUN = 25_000
MAX_LOCATIONS_PER_RESULT = 1_000
MAX_RUNS = 20


def test_every_result_has_a_physical_location_github_can_take(fault_run: Path) -> None:
    # Given a real-model run with both FAIL and ERROR results ...
    run = load_results(fault_run)
    outcomes = {r.outcome for r in run.results}
    assert {Outcome.FAIL, Outcome.ERROR} <= outcomes

    # ... when it is exported ...
    path = write_sarif(run, fault_run)
    document = json.loads(path.read_text())

    # ... then the file is within the upload limits ...
    assert len(gzip.compress(path.read_bytes())) < MAX_GZIP_BYTES
    assert document["version"] == "2.1.0" and len(document["runs"]) <= MAX_RUNS
    sarif_run = document["runs"][0]
    rules = sarif_run["tool"]["driver"]["rules"]
    assert sarif_run["tool"]["driver"]["name"]
    assert len(sarif_run["results"]) <= MAX_RESULTS_PER_RUN and len(rules) <= MAX_RULES_PER_RUN
    # ... every rule has help text naming the promise's words ...
    claims = {claim.id: claim for claim in run.claims}
    for rule in rules:
        assert rule["help"]["text"].strip() and rule["help"]["markdown"].strip()
        for claim_id in rule["properties"]["claims"]:
            assert " ".join(claims[claim_id].text.split())[:60] in rule["help"]["text"]
    # ... and every result points at a line of promises.md, which the bundle carries.
    page = (fault_run / PROMISES_MD).read_text().splitlines()
    levels = {}
    rule_ids = {rule["id"] for rule in rules}
    for result in sarif_run["results"]:
        assert result["ruleId"] in rule_ids and result["message"]["text"].strip()
        assert result["level"] in ("error", "warning", "note", "none")
        assert result.get("kind", "fail") == "fail"  # SARIF: a level other than none needs kind fail
        assert 1 <= len(result["locations"]) <= MAX_LOCATIONS_PER_RESULT
        physical = result["locations"][0]["physicalLocation"]
        uri = physical["artifactLocation"]["uri"]
        assert uri == PROMISES_MD and "://" not in uri and not uri.startswith("/")
        line = physical["region"]["startLine"]
        assert isinstance(line, int) and 1 <= line <= len(page)
        claim_id = next(c for c in result["properties"]["claims"] if c in claims)
        assert page[line - 1].startswith(f"- {claim_id}: ")
        levels[result["properties"]["outcome"]] = result["level"]
        assert result["partialFingerprints"]
    assert levels == {"FAIL": "error", "ERROR": "warning"}
