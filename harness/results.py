"""Machine-readable results of a run: the models, results.json and junit.xml.

The JSON schema of results.json is generated from these models
(``votriz-audit schema``), never written by hand.
"""

from __future__ import annotations

import datetime as dt
import json
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from harness import __version__
from harness.claims import Catalogue
from harness.outcomes import Outcome

RESULTS_SCHEMA_VERSION = 1

# Worst first: the claim's outcome is the worst of its checks' outcomes.
_SEVERITY = [Outcome.FAIL, Outcome.ERROR, Outcome.MANUAL, Outcome.WAIVED, Outcome.PASS,
             Outcome.NOT_APPLICABLE]


class WaiverNote(BaseModel):
    """How a waiver affected a result.

    Attributes:
        applied: True if the waiver changed the outcome to WAIVED.
        original_outcome: the outcome before the waiver.
        justification, approved_by, expires: from the waiver file.
    """

    model_config = ConfigDict(frozen=True)

    applied: bool
    original_outcome: Outcome
    justification: str
    approved_by: str
    expires: dt.date


class CheckResult(BaseModel):
    """The result of one check.

    Attributes:
        finding_id: stable across runs: check id, claim ids, subject.
        check_id: e.g. ``transit.tls_versions``.
        claims: ids of the claims the check verifies.
        outcome: the verdict's outcome (after waivers).
        message: why, in one or two sentences (redacted).
        details: structured evidence summary (redacted).
        evidence: evidence files, relative to the report directory.
        duration_s: wall time of the check, its fixtures included.
        waiver: present if a waiver names this check.
    """

    model_config = ConfigDict(frozen=True)

    finding_id: str
    check_id: str
    claims: tuple[str, ...]
    outcome: Outcome
    message: str
    details: dict[str, Any] = Field(default_factory=dict)
    evidence: tuple[str, ...] = ()
    duration_s: float = 0.0
    waiver: WaiverNote | None = None


class Attestation(BaseModel):
    """A human attestation supplied for a claim through the profile.

    Attributes:
        path: the file as named by the profile.
        sha256: digest of its content, so the report pins what was attested.
    """

    model_config = ConfigDict(frozen=True)

    path: str
    sha256: str


class ClaimResult(BaseModel):
    """The verdict on one promise of the page, from its checks and attestations.

    Attributes:
        id, section, text: the claim as catalogued.
        outcome: worst outcome of its checks run in this run; MANUAL where only a
            human can verify (part of) it and no attestation was supplied; None
            if none of its checks ran (e.g. excluded with ``--only``).
        checks: ids of its checks.
        manual: what a human must attest, if anything.
        attestation: the attestation supplied, if any.
        note: what the report says about the claim itself.
    """

    model_config = ConfigDict(frozen=True)

    id: str
    section: str
    text: str
    outcome: Outcome | None
    checks: tuple[str, ...]
    manual: str | None = None
    attestation: Attestation | None = None
    note: str | None = None


class Summary(BaseModel):
    """Counts and the gate decision.

    Attributes:
        counts: number of checks per outcome.
        gate: ``pass`` (no FAIL, no ERROR), ``fail`` (a promise is broken),
            ``error`` (no FAIL, but something could not be verified).
        exit_code: 0, 1 or 2, as the gate.
    """

    model_config = ConfigDict(frozen=True)

    counts: dict[Outcome, int]
    gate: Literal["pass", "fail", "error"]
    exit_code: int


class RunResults(BaseModel):
    """Everything a run concluded (results.json).

    Attributes:
        schema_version: version of this format.
        tool, tool_version: who wrote it.
        run_id: unique id of the run.
        started_at, finished_at: UTC times.
        target: name, backend and edge of the audited system.
        policy: the policy used (name, version, all values).
        catalogue: title and page of the claims catalogue.
        summary: counts and gate.
        results: one per check, in run order.
        claims: one per claim, in the page's order.
    """

    model_config = ConfigDict(frozen=True)

    schema_version: int = RESULTS_SCHEMA_VERSION
    tool: str = "votriz-audit"
    tool_version: str = __version__
    run_id: str
    started_at: dt.datetime
    finished_at: dt.datetime
    target: dict[str, Any]
    policy: dict[str, Any]
    catalogue: dict[str, Any]
    summary: Summary
    results: tuple[CheckResult, ...]
    claims: tuple[ClaimResult, ...]


def worst(outcomes: list[Outcome]) -> Outcome | None:
    """The most severe outcome of a list (None for an empty list)."""
    if not outcomes:
        return None
    return min(outcomes, key=_SEVERITY.index)


def claim_results(catalogue: Catalogue, results: Sequence[CheckResult],
                  attestations: Mapping[str, Attestation]) -> list[ClaimResult]:
    """Each claim of the catalogue, in the page's order, with the worst outcome of what speaks for it.

    A check speaks for a claim if its marker names it: the catalogue's links come from the
    markers of checks/, a result's claims from the marker of the check that ran. A claim that
    needs a human is at best MANUAL until its attestation (by claim id) is given; an attestation
    alone makes a claim that no check serves PASS.
    """
    claims = []
    for claim in catalogue.claim:
        outcomes = [result.outcome for result in results
                    if result.check_id in claim.checks or claim.id in result.claims]
        attestation = attestations.get(claim.id)
        if claim.manual and attestation is None:
            outcomes.append(Outcome.MANUAL)
        if attestation is not None and not claim.checks:
            outcomes.append(Outcome.PASS)
        claims.append(ClaimResult(
            id=claim.id, section=claim.section, text=claim.text, outcome=worst(outcomes),
            checks=claim.checks, manual=claim.manual, attestation=attestation, note=claim.note))
    return claims


def summarise(results: list[CheckResult]) -> Summary:
    """Count outcomes and decide the gate: any FAIL → 1, else any ERROR → 2, else 0."""
    counts = {outcome: 0 for outcome in Outcome}
    for result in results:
        counts[result.outcome] += 1
    if counts[Outcome.FAIL]:
        return Summary(counts=counts, gate="fail", exit_code=1)
    if counts[Outcome.ERROR]:
        return Summary(counts=counts, gate="error", exit_code=2)
    return Summary(counts=counts, gate="pass", exit_code=0)


def results_schema() -> dict[str, Any]:
    """The JSON schema of results.json, generated from the models."""
    schema = RunResults.model_json_schema()
    schema["$id"] = f"https://votriz-audit/schemas/results-v{RESULTS_SCHEMA_VERSION}.json"
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def write_results_json(run: RunResults, path: Path) -> None:
    path.write_text(run.model_dump_json(indent=2) + "\n", encoding="utf-8")


def write_junit(run: RunResults, path: Path) -> None:
    """One testcase per check; FAIL → failure, ERROR → error, N/A and MANUAL → skipped."""
    counts = run.summary.counts
    suite = ET.Element(
        "testsuite",
        name="votriz-audit",
        tests=str(len(run.results)),
        failures=str(counts[Outcome.FAIL]),
        errors=str(counts[Outcome.ERROR]),
        skipped=str(counts[Outcome.NOT_APPLICABLE] + counts[Outcome.MANUAL]),
        time=f"{sum(r.duration_s for r in run.results):.3f}",
        timestamp=run.started_at.isoformat(),
    )
    for result in run.results:
        area, _, name = result.check_id.partition(".")
        case = ET.SubElement(suite, "testcase", classname=f"checks.{area}", name=name,
                             time=f"{result.duration_s:.3f}")
        props = ET.SubElement(case, "properties")
        for claim in result.claims:
            ET.SubElement(props, "property", name="claim", value=claim)
        ET.SubElement(props, "property", name="outcome", value=result.outcome.value)
        ET.SubElement(props, "property", name="finding_id", value=result.finding_id)
        if result.outcome is Outcome.FAIL:
            ET.SubElement(case, "failure", message=result.message, type="PromiseBroken").text = (
                json.dumps(result.details, indent=2, default=str))
        elif result.outcome is Outcome.ERROR:
            ET.SubElement(case, "error", message=result.message, type="CouldNotVerify")
        elif result.outcome in (Outcome.NOT_APPLICABLE, Outcome.MANUAL):
            ET.SubElement(case, "skipped", message=f"{result.outcome.value}: {result.message}")
        else:
            ET.SubElement(case, "system-out").text = f"{result.outcome.value}: {result.message}"
    suites = ET.Element("testsuites")
    suites.append(suite)
    ET.indent(suites)
    path.write_bytes(ET.tostring(suites, encoding="utf-8", xml_declaration=True))
