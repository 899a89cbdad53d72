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

from pydantic import BaseModel, ConfigDict, Field, model_validator

from harness import __version__
from harness.claims import Catalogue
from harness.outcomes import Outcome

# 2: the summary counts promises and checks apart, says whether the run was partial and
# whether it verified anything; claims say which of their checks did not run.
RESULTS_SCHEMA_VERSION = 2

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


class SampledScan(BaseModel):
    """A check that judged a uniform random sample of a table's rows, not every row.

    Attributes:
        table: the table sampled.
        rows_sampled: rows drawn and judged.
        rows_in_table: the table's rows (the planner's estimate unless ``rows_in_table_exact``).
        rows_in_table_exact: whether ``rows_in_table`` was counted.
        confidence: the confidence of the bound (0.99).
        violating_fraction_below: with that confidence, the fraction of rows that violate
            is below this, if the sample showed none: ``1 - (1 - confidence) ** (1 / rows_sampled)``.
    """

    model_config = ConfigDict(frozen=True)

    table: str
    rows_sampled: int
    rows_in_table: int
    rows_in_table_exact: bool
    confidence: float
    violating_fraction_below: float


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
        sampled: present if the check judged a sample of rows, not every row (from its
            details' ``sampling``): the report and every reader must say SAMPLED.
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
    sampled: SampledScan | None = None

    @model_validator(mode="before")
    @classmethod
    def _sampled_from_details(cls, data: Any) -> Any:
        """A verdict whose details say it sampled (``details["sampling"]``) is marked so,
        whoever builds the result."""
        if isinstance(data, dict) and data.get("sampled") is None:
            sampling = (data.get("details") or {}).get("sampling")
            if isinstance(sampling, dict) and sampling.get("sampled"):
                data = {**data, "sampled": {k: sampling.get(k) for k in SampledScan.model_fields}}
        return data


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
            (not run) if one of its checks did not run (e.g. excluded with ``--only``)
            and none of those that ran FAILED or ERRORED: a promise is never judged
            on part of its checks.
        checks: ids of its checks.
        checks_not_run: those of its checks that have no result in this run.
        verified: True when its outcome is PASS, FAIL or WAIVED and a check observed it
            (PASS, FAIL, or a waived FAIL): N/A, MANUAL, ERROR and an attestation alone
            verify nothing, nor does a check that saw part of a promise still needing a human.
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
    checks_not_run: tuple[str, ...] = ()
    verified: bool = False
    manual: str | None = None
    attestation: Attestation | None = None
    note: str | None = None


Gate = Literal["pass", "fail", "error", "vacuous", "unattested"]

#: The exit code of each gate decision (the CLI's table of exit codes says the same).
GATE_EXIT_CODES: dict[str, int] = {"pass": 0, "fail": 1, "error": 2, "vacuous": 2, "unattested": 2}


class Summary(BaseModel):
    """Counts of promises and of checks, and the gate decision.

    The promise (claim) is the gate's unit; checks are counted apart.

    Attributes:
        promises: number of promises per outcome (those judged in this run).
        promises_total: promises of the page (M).
        promises_run: promises judged in this run (N): those with an outcome.
        verified_promises: promises a check observed (PASS or FAIL).
        partial: True when some promise was not run (e.g. ``--only``).
        scope: ``all 36 promises`` or ``partial: N of M promises``.
        checks: number of checks per outcome (run-level problems included).
        checks_total: number of check results.
        attestations_missing: ids of promises judged in this run that need a human
            attestation and have none.
        gate: ``pass`` (no FAIL, no ERROR, something verified), ``fail`` (a promise is
            broken), ``error`` (no FAIL, but something could not be verified),
            ``vacuous`` (no FAIL or ERROR, but no promise was verified by a check),
            ``unattested`` (attestations are required and some are missing).
        exit_code: 0, 1 or 2, as the gate.
        reason: why the gate decided so, in one line.
        headline: the gate, the scope and both counts in one line.
    """

    model_config = ConfigDict(frozen=True)

    promises: dict[Outcome, int]
    promises_total: int
    promises_run: int
    verified_promises: int
    partial: bool
    scope: str
    checks: dict[Outcome, int]
    checks_total: int
    attestations_missing: tuple[str, ...] = ()
    gate: Gate
    exit_code: int
    reason: str
    headline: str


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


def _observed(result: CheckResult) -> bool:
    """True when the check observed its promise holding or broken (a waived FAIL was observed)."""
    outcome = (result.waiver.original_outcome if result.outcome is Outcome.WAIVED and result.waiver
               else result.outcome)
    return outcome in (Outcome.PASS, Outcome.FAIL)


def claim_results(catalogue: Catalogue, results: Sequence[CheckResult],
                  attestations: Mapping[str, Attestation]) -> list[ClaimResult]:
    """Each claim of the catalogue, in the page's order, with the worst outcome of what speaks for it.

    A check speaks for a claim if its marker names it: the catalogue's links come from the
    markers of checks/, a result's claims from the marker of the check that ran. A claim that
    needs a human is at best MANUAL until its attestation (by claim id) is given; an attestation
    alone makes a claim that no check serves PASS. A claim one of whose checks did not run is
    not run (outcome None) unless a check that did run FAILED or ERRORED.
    """
    claims = []
    for claim in catalogue.claim:
        speaking = [result for result in results
                    if result.check_id in claim.checks or claim.id in result.claims]
        ran = {result.check_id for result in speaking}
        not_run = tuple(check for check in claim.checks if check not in ran)
        outcomes = [result.outcome for result in speaking]
        attestation = attestations.get(claim.id)
        if claim.manual and attestation is None:
            outcomes.append(Outcome.MANUAL)
        if attestation is not None and not claim.checks:
            outcomes.append(Outcome.PASS)
        outcome = worst(outcomes)
        if not_run and outcome not in (Outcome.FAIL, Outcome.ERROR):
            outcome = None
        claims.append(ClaimResult(
            id=claim.id, section=claim.section, text=claim.text, outcome=outcome,
            checks=claim.checks, checks_not_run=not_run,
            verified=outcome in (Outcome.PASS, Outcome.FAIL, Outcome.WAIVED)
            and any(_observed(result) for result in speaking),
            manual=claim.manual, attestation=attestation, note=claim.note))
    return claims


def _tally(outcomes: Sequence[Outcome]) -> dict[Outcome, int]:
    counts = {outcome: 0 for outcome in Outcome}
    for outcome in outcomes:
        counts[outcome] += 1
    return counts


def _listed(counts: Mapping[Outcome, int]) -> str:
    return ", ".join(f"{n} {outcome.value}" for outcome, n in counts.items() if n)


def _nothing_verified_because(results: Sequence[CheckResult], deselected: int) -> str:
    if not results and deselected:
        return f"all {deselected} checks were deselected"
    if not results:
        return "no check was collected"
    if any(_observed(result) for result in results):
        return ("the checks that ran settled no promise: each still has a check that did not run "
                "or needs an attestation")
    outcomes = _listed(_tally([result.outcome for result in results]))
    return f"every check that ran ended without an observation: {outcomes}"


def summarise(results: Sequence[CheckResult], claims: Sequence[ClaimResult], *,
              require_attestations: bool = False, deselected: int = 0) -> Summary:
    """Count promises and checks and decide the gate.

    Any FAIL → ``fail`` (1); else any ERROR → ``error`` (2); else no promise verified by a
    check → ``vacuous`` (2); else, when attestations are required, a promise judged in this
    run that needs one and has none → ``unattested`` (2); else ``pass`` (0).

    Args:
        results: every check result of the run, run-level problems included.
        claims: the claims' results (:func:`claim_results`).
        require_attestations: a missing attestation blocks the gate.
        deselected: checks collected but deselected (named in the reason when nothing ran).
    """
    checks = _tally([result.outcome for result in results])
    judged = [claim for claim in claims if claim.outcome is not None]
    promises = _tally([claim.outcome for claim in judged if claim.outcome is not None])
    total, run = len(claims), len(judged)
    verified = sum(1 for claim in claims if claim.verified)
    # A promise needs a human when the catalogue says so and no attestation was given, or when
    # it still ends MANUAL (a check could only say MANUAL: e.g. hardware backing on a token that
    # reports itself as software, which an attestation does not change).
    missing = tuple(claim.id for claim in judged if claim.outcome is Outcome.MANUAL
                    or (claim.manual and claim.attestation is None))
    partial = run < total
    scope = f"partial: {run} of {total} promises" if partial else f"all {total} promises"
    gate: Gate
    if checks[Outcome.FAIL]:
        gate, reason = "fail", (f"{promises[Outcome.FAIL]} of {total} promises broken "
                                f"({checks[Outcome.FAIL]} checks FAILED)")
    elif checks[Outcome.ERROR]:
        gate, reason = "error", (f"no promise observed broken, but {checks[Outcome.ERROR]} checks could "
                                 f"not verify theirs")
    elif not verified:
        gate, reason = "vacuous", (f"nothing was verified: 0 of {total} promises had a check that "
                                   f"observed them ({_nothing_verified_because(results, deselected)})")
    elif missing and require_attestations:
        gate, reason = "unattested", (f"{len(missing)} promises need an attestation and have none "
                                      f"(attestations are required): {', '.join(missing)}")
    else:
        gate, reason = "pass", (f"no promise observed broken; {verified} of {total} promises verified "
                                f"by a check" + (f", {len(missing)} need an attestation" if missing else ""))
    promise_counts = _listed(promises) or "none judged"
    headline = (f"gate {gate.upper()} (exit {GATE_EXIT_CODES[gate]}): {reason}. Promises ({scope}): "
                f"{promise_counts}. Checks: {_listed(checks) or 'none ran'}.")
    return Summary(promises=promises, promises_total=total, promises_run=run, verified_promises=verified,
                   partial=partial, scope=scope, checks=checks, checks_total=len(results),
                   attestations_missing=missing, gate=gate, exit_code=GATE_EXIT_CODES[gate],
                   reason=reason, headline=headline)


def results_schema() -> dict[str, Any]:
    """The JSON schema of results.json, generated from the models."""
    schema = RunResults.model_json_schema()
    schema["$id"] = f"https://votriz-audit/schemas/results-v{RESULTS_SCHEMA_VERSION}.json"
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def write_results_json(run: RunResults, path: Path) -> None:
    path.write_text(run.model_dump_json(indent=2) + "\n", encoding="utf-8")


def write_junit(run: RunResults, path: Path) -> None:
    """One testcase per check; FAIL → failure, ERROR → error, N/A and MANUAL → skipped.

    The testsuite's properties carry the gate and the scope (``partial: N of M promises``),
    so a CI page that shows only JUnit still sees a partial or vacuous run for what it is.
    """
    summary = run.summary
    counts = summary.checks
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
    suite_props = ET.SubElement(suite, "properties")
    for name, value in (("gate", summary.gate), ("exit_code", summary.exit_code),
                        ("scope", summary.scope), ("partial", str(summary.partial).lower()),
                        ("promises_total", summary.promises_total), ("promises_run", summary.promises_run),
                        ("verified_promises", summary.verified_promises), ("headline", summary.headline)):
        ET.SubElement(suite_props, "property", name=name, value=str(value))
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
