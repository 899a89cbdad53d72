"""``oscal-assessment-results.json``: the run as an OSCAL assessment-results document.

Built with compliance-trestle's pydantic models of OSCAL
(``trestle.oscal.assessment_results``), so the document is validated by
construction against OSCAL's constraints as trestle encodes them. trestle is a
report-only dependency (the ``report`` extra); without it
:func:`build_assessment_results` raises :class:`OscalUnavailable` and
:func:`~harness.report.commands.finalize` skips this export, saying so.

The mapping:

- one ``result`` for the run (start/end, gate and policy as props);
- one ``observation`` per check result (method TEST; its outcome, check id and
  finding id as props; every evidence file as ``relevant-evidence``);
- one ``finding`` per claim of the page, its target the claim id as an
  ``objective-id``: PASS → satisfied/pass, N/A → satisfied/other, FAIL →
  not-satisfied/fail; ERROR, MANUAL, WAIVED and not run → not-satisfied/other,
  the remarks saying which. Supplied attestations are named in the remarks.

There is no OSCAL assessment plan behind a run; ``import-ap`` points at the
claims catalogue the run audited, with a remark saying so. UUIDs are derived
from the run id (UUID v5), so exporting the same run twice gives the same
document.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from harness.outcomes import Outcome
from harness.report.layout import OSCAL_FILE
from harness.results import ClaimResult, RunResults

PROP_NS = "https://votriz-audit.invalid/ns/oscal"


class OscalUnavailable(Exception):
    """compliance-trestle is not installed (install the ``report`` extra)."""


def _uuid(run: RunResults, *parts: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "votriz-audit:" + ":".join((run.run_id, *parts))))


_FINDING_STATE: dict[Outcome | None, tuple[str, str, str]] = {
    Outcome.PASS: ("satisfied", "pass", "The promise was observed to hold."),
    Outcome.NOT_APPLICABLE: ("satisfied", "other", "Not applicable to this target."),
    Outcome.FAIL: ("not-satisfied", "fail", "The system was observed breaking the promise."),
    Outcome.ERROR: ("not-satisfied", "other", "Could not verify: a check could not observe what it needs."),
    Outcome.MANUAL: ("not-satisfied", "other", "Needs a human attestation, and none was supplied."),
    Outcome.WAIVED: ("not-satisfied", "other", "Broken or unverified, under a current waiver."),
    None: ("not-satisfied", "other", "Not assessed in this run (not all of its checks ran)."),
}


def build_assessment_results(run: RunResults) -> Any:
    """The run as a trestle ``AssessmentResults`` model.

    Raises:
        OscalUnavailable: compliance-trestle is not installed.
    """
    try:
        from trestle.oscal import OSCAL_VERSION, common
        from trestle.oscal import assessment_results as ar
    except ImportError:
        raise OscalUnavailable("compliance-trestle is not installed (pip install 'votriz-audit[report]')"
                               ) from None

    def prop(name: str, value: object) -> Any:
        return common.Property(name=name, value=str(value), ns=PROP_NS)

    observations: list[Any] = []
    by_check: dict[str, list[str]] = {}
    for result in run.results:
        obs_uuid = _uuid(run, "observation", result.finding_id)
        by_check.setdefault(result.check_id, []).append(obs_uuid)
        evidence = [common.RelevantEvidence(href=path, description=f"Evidence of {result.check_id}: {path}")
                    for path in result.evidence]
        observations.append(common.Observation(
            uuid=obs_uuid, title=result.check_id,
            description=f"{result.outcome.value}: {result.message}",
            methods=["TEST"], types=["finding"],
            props=[prop("outcome", result.outcome.value), prop("check-id", result.check_id),
                   prop("finding-id", result.finding_id)],
            relevant_evidence=evidence or None, collected=run.finished_at))
    findings = [_finding(run, claim, by_check, common, prop) for claim in run.claims]
    target, page = run.target.get("name", "the target"), run.catalogue.get("title", "the page")
    assessed = ar.Result(
        uuid=_uuid(run, "result"),
        title=f"Audit of {target} against {page}",
        description=(f"votriz-audit run {run.run_id}: gate {run.summary.gate} (exit code "
                     f"{run.summary.exit_code}): {run.summary.reason}. Scope: {run.summary.scope}; "
                     f"{run.summary.verified_promises} promises verified by a check; "
                     f"{len(run.results)} check results."),
        start=run.started_at, end=run.finished_at,
        props=[prop("gate", run.summary.gate), prop("run-id", run.run_id),
               prop("scope", run.summary.scope),
               prop("verified-promises", run.summary.verified_promises),
               prop("policy", f"{run.policy.get('name', '?')} {run.policy.get('version', '?')}"),
               prop("target-edge", run.target.get("edge", "?"))],
        reviewed_controls=common.ReviewedControls(
            description="Every promise of the published page, each a claim of the catalogue.",
            control_selections=[common.ControlSelectionsAll(include_all=common.IncludeAll())]),
        observations=observations or None, findings=findings or None)
    metadata = common.Metadata(
        title=f"votriz-audit assessment results: {run.target.get('name', 'target')}",
        last_modified=run.finished_at, version=run.tool_version, oscal_version=OSCAL_VERSION)
    return ar.AssessmentResults(
        uuid=_uuid(run, "assessment-results"), metadata=metadata,
        import_ap=ar.ImportAp(href=str(run.catalogue.get("page", "encryption-page.md")),
                              remarks="No OSCAL assessment plan: the run audited the claims catalogue "
                                      "of this published page."),
        results=[assessed])


def _finding(run: RunResults, claim: ClaimResult, by_check: dict[str, list[str]], common: Any,
             prop: Any) -> Any:
    state, reason, meaning = _FINDING_STATE[claim.outcome]
    related = [uid for check in dict.fromkeys(
        [*claim.checks, *(r.check_id for r in run.results if claim.id in r.claims)])
        for uid in by_check.get(check, [])]
    remarks = meaning
    if claim.manual:
        remarks += (f" Attestation supplied: {claim.attestation.path} (sha256 {claim.attestation.sha256})."
                    if claim.attestation else f" Needs a human: {claim.manual}")
    return common.Finding(
        uuid=_uuid(run, "finding", claim.id), title=f"{claim.id}: {claim.section}",
        description=claim.text,
        props=[prop("outcome", claim.outcome.value if claim.outcome else "NOT_RUN")],
        target=common.FindingTarget(
            type="objective-id", target_id=claim.id,
            status=common.ObjectiveStatus(state=state, reason=reason, remarks=meaning)),
        related_observations=[common.RelatedObservation(observation_uuid=uid)
                              for uid in dict.fromkeys(related)] or None,
        remarks=remarks)


def write_oscal(run: RunResults, report_dir: Path) -> Path:
    """Write ``REPORT/oscal-assessment-results.json``.

    Raises:
        OscalUnavailable: compliance-trestle is not installed.
    """
    document = build_assessment_results(run)
    path = report_dir / OSCAL_FILE
    path.write_text(document.oscal_serialize_json(pretty=True) + "\n", encoding="utf-8")
    return path
