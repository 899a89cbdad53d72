"""``results.sarif``: the run's FAILs and ERRORs as SARIF 2.1.0, for code-scanning tools.

One rule per check id of the run (its claims in ``properties.claims``), one
result per check that FAILED or ERRORED (a SARIF log with no result is not a
pass: the run's ``properties`` carry the gate, its reason and the scope, e.g. a
vacuous run or ``partial: N of M promises``):

- FAIL → ``kind: "fail"``, ``level: "error"``: the system broke the promise;
- ERROR → ``kind: "open"``, ``level: "none"``: the check could not decide
  (SARIF says a result whose kind is not ``fail`` must have level ``none``).

Locations. A result gets a physical location when its ``details`` name a file,
by this convention (the keys a check puts in ``Verdict.details``):

- ``file`` or ``path`` (a string path), with optional ``line`` and ``column``
  (positive integers), at the top level of ``details``; or
- ``locations``: a list of objects with those same keys, for several places.

Absolute paths become ``file://`` URIs, relative ones stay relative. Every
result also has a logical location per claim (``kind: "module"``, the claim
id), so a tool that needs a location always finds one.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

from harness.outcomes import Outcome
from harness.report.layout import SARIF_FILE
from harness.results import CheckResult, RunResults

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA_URI = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"


def _positive_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _uri(path: str) -> str:
    if path.startswith("/"):
        return "file://" + quote(path)
    return quote(PurePosixPath(path).as_posix())


def _place(entry: dict[str, Any]) -> dict[str, Any] | None:
    path = entry.get("file", entry.get("path"))
    if not isinstance(path, str) or not path.strip():
        return None
    physical: dict[str, Any] = {"artifactLocation": {"uri": _uri(path.strip())}}
    line = _positive_int(entry.get("line"))
    if line is not None:
        region: dict[str, Any] = {"startLine": line}
        column = _positive_int(entry.get("column"))
        if column is not None:
            region["startColumn"] = column
        physical["region"] = region
    return {"physicalLocation": physical}


def locations_of(result: CheckResult) -> list[dict[str, Any]]:
    """The SARIF locations named by a result's details (the convention in the module docstring)."""
    details = result.details
    entries: list[dict[str, Any]] = [details]
    listed = details.get("locations")
    if isinstance(listed, list):
        entries += [item for item in listed if isinstance(item, dict)]
    places = [place for place in map(_place, entries) if place is not None]
    logical = [{"fullyQualifiedName": claim, "kind": "module"} for claim in result.claims]
    if places:
        places[0]["logicalLocations"] = logical
        return places
    return [{"logicalLocations": logical}] if logical else []


def _rule(check_id: str, results: list[CheckResult], catalogue: dict[str, Any]) -> dict[str, Any]:
    claims = sorted({claim for r in results for claim in r.claims})
    area, _, name = check_id.partition(".")
    page = catalogue.get("title", "the page")
    return {
        "id": check_id,
        "name": "".join(part.capitalize() for part in f"{area}_{name}".split("_")),
        "shortDescription": {"text": f"{check_id}: verifies {', '.join(claims) or 'no claim'}"},
        "fullDescription": {"text": f"Check {check_id} of votriz-audit, verifying the promise(s) "
                                    f"{', '.join(claims) or '(none)'} of {page}."},
        "defaultConfiguration": {"level": "error"},
        "properties": {"claims": claims, "area": area},
    }


def build_sarif(run: RunResults) -> dict[str, Any]:
    """The SARIF 2.1.0 log of a run (a JSON-able dict)."""
    check_ids = list(dict.fromkeys(r.check_id for r in run.results))
    rules = [_rule(cid, [r for r in run.results if r.check_id == cid], run.catalogue) for cid in check_ids]
    results = []
    for result in run.results:
        if result.outcome not in (Outcome.FAIL, Outcome.ERROR):
            continue
        failed = result.outcome is Outcome.FAIL
        entry: dict[str, Any] = {
            "ruleId": result.check_id,
            "ruleIndex": check_ids.index(result.check_id),
            "kind": "fail" if failed else "open",
            "level": "error" if failed else "none",
            "message": {"text": (result.message if failed else f"Could not verify: {result.message}")},
            "partialFingerprints": {"findingId/v1": result.finding_id},
            "properties": {"outcome": result.outcome.value, "finding_id": result.finding_id,
                           "claims": list(result.claims), "evidence": list(result.evidence)},
        }
        locations = locations_of(result)
        if locations:
            entry["locations"] = locations
        results.append(entry)
    return {
        "$schema": SARIF_SCHEMA_URI,
        "version": SARIF_VERSION,
        "runs": [{
            "tool": {"driver": {"name": run.tool, "version": run.tool_version,
                                "semanticVersion": run.tool_version, "rules": rules}},
            "automationDetails": {"id": f"votriz-audit/{run.target.get('name', 'target')}/{run.run_id}"},
            "invocations": [{"executionSuccessful": True,
                             "startTimeUtc": run.started_at.isoformat().replace("+00:00", "Z"),
                             "endTimeUtc": run.finished_at.isoformat().replace("+00:00", "Z")}],
            "results": results,
            "properties": {"gate": run.summary.gate, "exit_code": run.summary.exit_code,
                           "gate_reason": run.summary.reason, "scope": run.summary.scope,
                           "partial": run.summary.partial,
                           "promises_total": run.summary.promises_total,
                           "promises_run": run.summary.promises_run,
                           "verified_promises": run.summary.verified_promises,
                           "attestations_missing": list(run.summary.attestations_missing),
                           "target": run.target, "policy": {"name": run.policy.get("name"),
                                                            "version": run.policy.get("version")},
                           "results_schema_version": run.schema_version},
        }],
    }


def write_sarif(run: RunResults, report_dir: Path) -> Path:
    """Write ``REPORT/results.sarif``."""
    path = report_dir / SARIF_FILE
    path.write_text(json.dumps(build_sarif(run), indent=2, default=str) + "\n", encoding="utf-8")
    return path
