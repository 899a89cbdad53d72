"""``report.html``: the run's evidence as one self-contained page.

The page needs nothing but itself: CSS and SVG charts are inline, there is no
script, no font, no image and nothing loaded from off the page (evidence files
are linked relative to it). Its first screen holds the verdict over the promises,
a summary in words generated from the results, the scope and its limits, who ran
the audit where with which tool and commit, and who sealed the bundle and how to
verify it (:mod:`harness.report.first_screen`). Then one row per promise in the
page's words as plain text (:mod:`harness.report.humanise`), then the claims in the
page's order with their checks and evidence; the auditor machine's paths and the
full finding ids are kept for an appendix. Jinja2 renders it with autoescape on,
and when the run's known secrets are given the finished page is redacted again.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from harness.claims import CLAIMS_DIR
from harness.outcomes import Outcome
from harness.redaction import KnownSecrets
from harness.report.calibration import Calibration, load_calibration
from harness.report.diff import REGRESSIONS, Change, RunDiff, regression_words
from harness.report.evidence_views import EvidenceView, view_evidence
from harness.report.first_screen import executive_summary, provenance_of, scope_of
from harness.report.humanise import (
    field_words,
    is_file_path,
    is_identifier,
    looks_like_json,
    mark_identifiers,
    marker_words,
    number_words,
    plain_markdown,
    plain_promises,
    short_id,
    shown_path,
    time_words,
)
from harness.report.layout import CALIBRATION_JSON, REPORT_HTML, EvidenceFile, load_results, read_evidence
from harness.report.seal import SEAL_FILE, VERIFY_MD, SignerFacts
from harness.results import CheckResult, ClaimResult, RunResults


@dataclass(frozen=True)
class OutcomeStyle:
    """How an outcome is shown: a symbol and words as well as a colour.

    Attributes:
        symbol: a glyph that differs per outcome.
        label: the outcome's name.
        words: what it means for the promise.
        css: the CSS class of its badge.
    """

    symbol: str
    label: str
    words: str
    css: str


OUTCOME_STYLES: dict[Outcome | None, OutcomeStyle] = {
    Outcome.PASS: OutcomeStyle("✓", "PASS", "promise kept", "pass"),
    Outcome.FAIL: OutcomeStyle("✗", "FAIL", "promise broken", "fail"),
    Outcome.ERROR: OutcomeStyle("?", "ERROR", "could not verify", "error"),
    Outcome.NOT_APPLICABLE: OutcomeStyle("\N{EN DASH}", "N/A", "does not apply", "na"),
    Outcome.MANUAL: OutcomeStyle("✎", "MANUAL", "needs a human attestation", "manual"),
    Outcome.WAIVED: OutcomeStyle("≈", "WAIVED", "broken or unverified, under a current waiver", "waived"),
    None: OutcomeStyle("○", "NOT RUN", "not all of its checks ran in this run", "notrun"),
}

#: The first screen's tiles count promises: what each outcome means for that many promises.
PROMISE_TILE_WORDS: dict[Outcome | None, str] = {
    Outcome.PASS: "promises kept",
    Outcome.FAIL: "promises broken",
    Outcome.ERROR: "promises not verifiable",
    Outcome.NOT_APPLICABLE: "promises that do not apply",
    Outcome.MANUAL: "promises needing a human attestation",
    Outcome.WAIVED: "promises under a waiver",
    None: "promises not run",
}

#: Each gate decision: symbol, title, CSS class. The words under it are the summary's reason.
GATE_STYLES = {
    "pass": ("✓", "Gate passed", "pass"),
    "fail": ("✗", "Promise broken", "fail"),
    "error": ("?", "Could not verify", "error"),
    "vacuous": ("∅", "Nothing verified", "error"),
    "unattested": ("✎", "Attestations missing", "error"),
}


@dataclass(frozen=True)
class CheckEntry:
    """One check as shown under a claim.

    Attributes:
        result: the check's result.
        views: its evidence views (empty when they are shown under an earlier claim).
        shown_under: the claim under which its evidence is shown.
        anchor: the HTML id of the place its evidence is shown.
    """

    result: CheckResult
    views: tuple[EvidenceView, ...]
    shown_under: str
    anchor: str


@dataclass(frozen=True)
class ClaimSection:
    """One claim of the page as shown in the report.

    Attributes:
        claim: the claim's result.
        checks: the results of its checks that ran.
        not_run: its checks that have no result in this run.
    """

    claim: ClaimResult
    checks: tuple[CheckEntry, ...]
    not_run: tuple[str, ...]


def _details_view(result: CheckResult, files: list[EvidenceFile], policy: Mapping[str, Any]
                  ) -> EvidenceView | None:
    """The check's details from results.json that no evidence file already shows (the same key with
    the same value): a table is shown once."""
    details = json.loads(json.dumps(result.details, default=str))
    shown = [f.data for f in files if f.kind == "json" and isinstance(f.data, dict)]
    rest = {key: value for key, value in details.items()
            if not any(key in data and data[key] == value for data in shown)}
    if not rest:
        return None
    return view_evidence(EvidenceFile("results.json", "details", None, "json", data=rest), policy)


def _anchor(finding_id: str) -> str:
    return "check-" + "".join(c if c.isalnum() or c in "-_." else "-" for c in finding_id)


def claim_sections(run: RunResults, report_dir: Path) -> list[ClaimSection]:
    """The claims in the page's order, each with its checks; evidence is shown once, under the
    first claim that cites the check, and referred to from the later ones."""
    shown: dict[str, str] = {}
    sections = []
    for claim in run.claims:
        entries, not_run = [], []
        cited = (r.check_id for r in run.results if claim.id in r.claims)
        wanted = list(dict.fromkeys([*claim.checks, *cited]))
        for check_id in wanted:
            results = [r for r in run.results if r.check_id == check_id]
            if not results:
                not_run.append(check_id)
            for result in results:
                views: tuple[EvidenceView, ...] = ()
                if result.finding_id not in shown:
                    shown[result.finding_id] = claim.id
                    files = [read_evidence(report_dir, path) for path in result.evidence]
                    listed = [view_evidence(f, run.policy) for f in files]
                    details = _details_view(result, files, run.policy)
                    views = tuple(listed + ([details] if details else []))
                entries.append(CheckEntry(result, views, shown[result.finding_id],
                                          _anchor(result.finding_id)))
        sections.append(ClaimSection(claim, tuple(entries), tuple(not_run)))
    return sections


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("harness.report", "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["words"] = field_words
    env.filters["plain"] = plain_markdown
    env.filters["time"] = time_words
    env.filters["ids"] = mark_identifiers
    env.tests["identifier"] = lambda value: isinstance(value, str) and is_identifier(value)
    env.filters["number"] = number_words
    env.filters["shown_path"] = shown_path
    env.filters["short_id"] = short_id
    env.filters["marker"] = marker_words
    env.tests["json_text"] = looks_like_json
    env.tests["abs_path"] = lambda value: isinstance(value, str) and is_file_path(value)
    env.tests["number"] = lambda value: isinstance(value, int | float) and not isinstance(value, bool)
    env.tests["scalar"] = lambda value: value is None or isinstance(value, str | int | float | bool)
    env.tests["mapping"] = lambda value: isinstance(value, dict)
    env.tests["rows"] = lambda value: (isinstance(value, list) and bool(value)
                                       and all(isinstance(v, dict) for v in value))
    env.tests["sequence_value"] = lambda value: isinstance(value, list)
    return env


def _page_markdown(run: RunResults) -> str:
    """The published page the catalogue was taken from (for its tables' column names), if present."""
    page = CLAIMS_DIR / str(run.catalogue.get("page", ""))
    try:
        return page.read_text(encoding="utf-8") if page.is_file() else ""
    except OSError:
        return ""


def render_html(run: RunResults, report_dir: Path, *, diff: RunDiff | None = None,
                calibration: Calibration | None = None, known_secrets: KnownSecrets | None = None,
                now: dt.datetime | None = None, signer: SignerFacts | None = None) -> str:
    """The report page for ``run``, reading its evidence from ``report_dir``.

    ``signer`` is the key that will seal the bundle, when the caller knows it before rendering;
    without it the page says where the seal names it.
    """
    generated = now or dt.datetime.now(dt.UTC)
    sections = claim_sections(run, report_dir)
    promises = plain_promises(run.claims, _page_markdown(run))
    # The tiles count promises (the gate's unit); checks get their own, labelled line.
    tiles = [(OUTCOME_STYLES[o], PROMISE_TILE_WORDS[o], sum(1 for c in run.claims if c.outcome is o))
             for o in (*Outcome, None)]
    check_counts = [(OUTCOME_STYLES[o].label, n) for o, n in run.summary.checks.items() if n]
    unattested = [c for c in run.claims if c.id in run.summary.attestations_missing]
    html = _environment().get_template("report.html.j2").render(
        run=run, sections=sections, promises=promises, summary_lines=executive_summary(run, promises),
        scope=scope_of(run), provenance=provenance_of(run), signer=signer, seal_file=SEAL_FILE,
        verify_md=VERIFY_MD, styles=OUTCOME_STYLES, gate=GATE_STYLES[run.summary.gate],
        tiles=tiles, check_counts=check_counts, unattested=unattested, diff=diff, regressions=REGRESSIONS,
        regression_words=regression_words(diff) if diff else "",
        gone=[d.key for d in (*diff.findings, *diff.claims) if d.change is Change.GONE] if diff else [],
        calibration=calibration, generated=generated,
        run_problems=[result for result in run.results if not result.claims],
        duration_s=(run.finished_at - run.started_at).total_seconds(),
        policy_name=str(run.policy.get("name", "unnamed policy")),
        policy_version=str(run.policy.get("version", "unversioned")))
    # The evidence was redacted when written; this is a second net for anything
    # the page assembles from it.
    return known_secrets.redact(html) if known_secrets is not None else html


def write_report(report_dir: Path, *, diff: RunDiff | None = None, known_secrets: KnownSecrets | None = None,
                 now: dt.datetime | None = None, signer: SignerFacts | None = None) -> Path:
    """Render ``REPORT/report.html`` from the directory's results.json, evidence and calibration.json.

    Raises:
        ReportDirError: the directory holds no valid results.json.
        CalibrationError: calibration.json exists but is invalid.
    """
    run = load_results(report_dir)
    calibration = load_calibration(report_dir / CALIBRATION_JSON)
    path = report_dir / REPORT_HTML
    path.write_text(render_html(run, report_dir, diff=diff, calibration=calibration,
                                known_secrets=known_secrets, now=now, signer=signer), encoding="utf-8")
    return path
