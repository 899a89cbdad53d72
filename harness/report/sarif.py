"""``results.sarif``: the run's FAILs and ERRORs as SARIF 2.1.0, for code-scanning tools.

One rule per check id of the run (its claims in ``properties.claims``, the
promises' words as its ``help`` text), one result per check that FAILED or
ERRORED (a SARIF log with no result is not a pass: the run's ``properties``
carry the gate, its reason and the scope, e.g. a vacuous run or ``partial: N of
M promises``):

- FAIL → ``kind: "fail"``, ``level: "error"``: the system broke the promise;
- ERROR → ``level: "warning"`` (kind ``fail``, SARIF's default, the only kind a
  warning may have), the message starting "Could not verify:".

Locations. GitHub code scanning refuses a result without a physical location,
and the promises are about a running system, not a source file: so every
result's first location is the line of its (first) promise in ``promises.md``,
the copy of the page's promises written beside the export, one promise per
line. Places a check names in its ``details`` become ``relatedLocations``:

- ``file`` or ``path`` (a string path), with optional ``line`` and ``column``
  (positive integers), at the top level of ``details``; or
- ``locations``: a list of objects with those same keys, for several places.

Absolute paths become ``file://`` URIs, relative ones stay relative. The first
location also carries a logical location per claim (``kind: "module"``).
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

from harness.outcomes import Outcome
from harness.report.layout import SARIF_FILE
from harness.results import CheckResult, ClaimResult, RunResults

#: The copy of the page's promises that every result points into (one promise per line).
PROMISES_MD = "promises.md"

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


def related_locations(result: CheckResult) -> list[dict[str, Any]]:
    """The places a result's details name (the convention in the module docstring), numbered."""
    details = result.details
    entries: list[dict[str, Any]] = [details]
    listed = details.get("locations")
    if isinstance(listed, list):
        entries += [item for item in listed if isinstance(item, dict)]
    places = [place for place in map(_place, entries) if place is not None]
    return [{"id": index, **place} for index, place in enumerate(places[:100], start=1)]


def promises_page(run: RunResults) -> tuple[str, dict[str, int]]:
    """``promises.md``: the page's promises, one per line, and the line of each claim id."""
    page = run.catalogue.get("title", "the page")
    lines = [f"# The promises of {page}", "",
             "Each line is one promise (claim id: the page's words); results.sarif points here.", ""]
    where: dict[str, int] = {}
    section = None
    for claim in run.claims:
        if claim.section != section:
            section = claim.section
            lines += [f"## {' '.join(section.split())}", ""]
        lines.append(f"- {claim.id}: {' '.join(claim.text.split())}")
        where[claim.id] = len(lines)
    return "\n".join(lines) + "\n", where


def locations_of(result: CheckResult, lines: dict[str, int]) -> list[dict[str, Any]]:
    """The result's one location: its first promise's line in promises.md, with every claim as a
    logical location."""
    line = next((lines[claim] for claim in result.claims if claim in lines), 1)
    return [{"physicalLocation": {"artifactLocation": {"uri": PROMISES_MD}, "region": {"startLine": line}},
             "logicalLocations": [{"fullyQualifiedName": claim, "kind": "module"}
                                  for claim in result.claims]}]


def _rule(check_id: str, results: list[CheckResult], catalogue: dict[str, Any],
          claims: dict[str, ClaimResult]) -> dict[str, Any]:
    ids = sorted({claim for r in results for claim in r.claims})
    area, _, name = check_id.partition(".")
    page = catalogue.get("title", "the page")
    words = [(claim, " ".join(claims[claim].text.split())) for claim in ids if claim in claims]
    if words:
        help_text = (f"Check {check_id} verifies these promises of {page}:\n"
                     + "\n".join(f"{claim}: {text}" for claim, text in words))
        markdown = (f"Check `{check_id}` verifies these promises of {page}:\n\n"
                    + "\n".join(f"- **{claim}**: {text}" for claim, text in words))
    else:
        help_text = markdown = f"Check {check_id} verifies no promise of {page} named in this run."
    return {
        "id": check_id,
        "name": "".join(part.capitalize() for part in f"{area}_{name}".split("_")),
        "shortDescription": {"text": f"{check_id}: verifies {', '.join(ids) or 'no claim'}"},
        "fullDescription": {"text": f"Check {check_id} of votriz-audit, verifying the promise(s) "
                                    f"{', '.join(ids) or '(none)'} of {page}."},
        "help": {"text": help_text, "markdown": markdown},
        "defaultConfiguration": {"level": "error"},
        "properties": {"claims": ids, "area": area},
    }


def build_sarif(run: RunResults) -> dict[str, Any]:
    """The SARIF 2.1.0 log of a run (a JSON-able dict)."""
    check_ids = list(dict.fromkeys(r.check_id for r in run.results))
    claims = {claim.id: claim for claim in run.claims}
    rules = [_rule(cid, [r for r in run.results if r.check_id == cid], run.catalogue, claims)
             for cid in check_ids]
    _, lines = promises_page(run)
    results = []
    for result in run.results:
        if result.outcome not in (Outcome.FAIL, Outcome.ERROR):
            continue
        failed = result.outcome is Outcome.FAIL
        entry: dict[str, Any] = {
            "ruleId": result.check_id,
            "ruleIndex": check_ids.index(result.check_id),
            "kind": "fail",
            "level": "error" if failed else "warning",
            "message": {"text": (result.message if failed else f"Could not verify: {result.message}")},
            "partialFingerprints": {"findingId/v1": result.finding_id},
            "properties": {"outcome": result.outcome.value, "finding_id": result.finding_id,
                           "claims": list(result.claims), "evidence": list(result.evidence)},
        }
        entry["locations"] = locations_of(result, lines)
        related = related_locations(result)
        if related:
            entry["relatedLocations"] = related
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
    """Write ``REPORT/results.sarif`` and the ``promises.md`` its locations point into."""
    (report_dir / PROMISES_MD).write_text(promises_page(run)[0], encoding="utf-8")
    path = report_dir / SARIF_FILE
    path.write_text(json.dumps(build_sarif(run), indent=2, default=str) + "\n", encoding="utf-8")
    return path
