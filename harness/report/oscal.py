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

``import-ap`` points at ``oscal-assessment-plan.json``, written beside it into
the bundle: one activity per check of the run, the claims it verifies, its
subject the promises in ``promises.md`` (the SARIF export's page copy; there is
no OSCAL SSP behind a published page). Each observation's ``collected`` time is
its own: the latest modification time of its evidence files (when the check
recorded them), or, for a result without evidence, the run's start plus the
durations of the checks up to and including it (the checks run one after the
other); a ``collected-basis`` prop says which. UUIDs are derived from the run id
(UUID v5), so exporting the same run twice gives the same document.
"""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

from harness.outcomes import Outcome
from harness.report.layout import OSCAL_FILE
from harness.report.sarif import PROMISES_MD, promises_page
from harness.results import CheckResult, ClaimResult, RunResults

PLAN_FILE = "oscal-assessment-plan.json"

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


def collection_times(run: RunResults, report_dir: Path | None) -> list[tuple[dt.datetime, str]]:
    """When each result's observation was collected, and on what basis (see the module docstring)."""
    times = []
    elapsed = 0.0
    for result in run.results:
        elapsed += max(result.duration_s, 0.0)
        estimate = min(run.started_at + dt.timedelta(seconds=elapsed), run.finished_at)
        times.append(_evidence_time(result, report_dir, run) or (estimate, "run-order-estimate"))
    return times


def _evidence_time(result: CheckResult, report_dir: Path | None,
                   run: RunResults) -> tuple[dt.datetime, str] | None:
    if report_dir is None:
        return None
    stamps = []
    for relative in result.evidence:
        try:
            stamps.append((report_dir / relative).stat().st_mtime)
        except OSError:
            continue
    if not stamps:
        return None
    when = dt.datetime.fromtimestamp(max(stamps), dt.UTC)
    return (when, "evidence-file-time") if run.started_at <= when <= run.finished_at else None


def _trestle() -> tuple[str, Any, Any, Any]:
    try:
        from trestle.oscal import OSCAL_VERSION, common
        from trestle.oscal import assessment_plan as ap
        from trestle.oscal import assessment_results as ar
    except ImportError:
        raise OscalUnavailable("compliance-trestle is not installed (pip install 'votriz-audit[report]')"
                               ) from None
    return OSCAL_VERSION, common, ap, ar


def build_assessment_plan(run: RunResults) -> Any:
    """The plan the run carried out, as a trestle ``AssessmentPlan``: one activity per check.

    Raises:
        OscalUnavailable: compliance-trestle is not installed.
    """
    oscal_version, common, ap, _ = _trestle()
    target, page = run.target.get("name", "the target"), run.catalogue.get("title", "the page")
    activities = []
    for check_id in dict.fromkeys(r.check_id for r in run.results):
        claims = sorted({c for r in run.results if r.check_id == check_id for c in r.claims})
        activities.append(common.Activity(
            uuid=_uuid(run, "activity", check_id), title=check_id,
            description=f"votriz-audit check {check_id}: observes the running system and judges the "
                        f"promise(s) {', '.join(claims) or '(none)'} of {page}.",
            props=[common.Property(name="check-id", value=check_id, ns=PROP_NS)]))
    return ap.AssessmentPlan(
        uuid=_uuid(run, "assessment-plan"),
        metadata=common.Metadata(title=f"votriz-audit assessment plan: {target} against {page}",
                                 last_modified=run.started_at, version=run.tool_version,
                                 oscal_version=oscal_version),
        import_ssp=common.ImportSsp(href=PROMISES_MD,
                                    remarks="No OSCAL system security plan: the system is assessed "
                                            "against the promises of its published page, copied here."),
        local_definitions=ap.LocalDefinitions(activities=activities or None),
        reviewed_controls=common.ReviewedControls(
            description="Every promise of the published page, each a claim of the catalogue.",
            control_selections=[common.ControlSelectionsAll(include_all=common.IncludeAll())]))


def build_assessment_results(run: RunResults, report_dir: Path | None = None) -> Any:
    """The run as a trestle ``AssessmentResults`` model (``report_dir``: where its evidence files are,
    for their collection times).

    Raises:
        OscalUnavailable: compliance-trestle is not installed.
    """
    OSCAL_VERSION, common, _, ar = _trestle()

    def prop(name: str, value: object) -> Any:
        return common.Property(name=name, value=str(value), ns=PROP_NS)

    observations: list[Any] = []
    by_check: dict[str, list[str]] = {}
    for result, (collected, basis) in zip(run.results, collection_times(run, report_dir), strict=True):
        obs_uuid = _uuid(run, "observation", result.finding_id)
        by_check.setdefault(result.check_id, []).append(obs_uuid)
        evidence = [common.RelevantEvidence(href=path, description=f"Evidence of {result.check_id}: {path}")
                    for path in result.evidence]
        observations.append(common.Observation(
            uuid=obs_uuid, title=result.check_id,
            description=f"{result.outcome.value}: {result.message}",
            methods=["TEST"], types=["finding"],
            props=[prop("outcome", result.outcome.value), prop("check-id", result.check_id),
                   prop("finding-id", result.finding_id), prop("collected-basis", basis)],
            relevant_evidence=evidence or None, collected=collected))
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
        import_ap=ar.ImportAp(href=PLAN_FILE, remarks="The plan this run carried out, in this bundle."),
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
    """Write ``REPORT/oscal-assessment-results.json``, the plan it imports,
    ``REPORT/oscal-assessment-plan.json``, and the promises.md the plan names.

    Raises:
        OscalUnavailable: compliance-trestle is not installed.
    """
    plan = build_assessment_plan(run)
    # The plan's import-ssp names the page copy: write it here too, so this export stands alone.
    (report_dir / PROMISES_MD).write_text(promises_page(run)[0], encoding="utf-8")
    (report_dir / PLAN_FILE).write_text(plan.oscal_serialize_json(pretty=True) + "\n", encoding="utf-8")
    document = build_assessment_results(run, report_dir)
    path = report_dir / OSCAL_FILE
    path.write_text(document.oscal_serialize_json(pretty=True) + "\n", encoding="utf-8")
    return path
