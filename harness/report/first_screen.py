"""The report's first screen, in words generated from the results (no free text is invented).

A reviewer who reads only the first screen learns: the verdict over the promises,
a summary (what was audited, what held, what broke, what could not be verified,
what needs a human attestation), the scope and its limits (the target and whether it
is the bundled reference service or a deployment, which checks ran, which promises
were out of reach and why), who ran the audit where, with which tool version and
commit, and who sealed the bundle and how to verify it.

:func:`run_provenance` is what the run records about itself for this screen (user and
host of the auditor, the tool's commit); the pytest plugin adds it to the run's
``target`` in results.json.
"""

from __future__ import annotations

import datetime as dt
import getpass
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.outcomes import Outcome
from harness.report.humanise import PlainPromise, join_words, plural
from harness.results import ClaimResult, RunResults

#: The target names the bundled reference service's own profiles carry (system_under_test writes them).
REFERENCE_PROFILE_PREFIX = "votriz-reference-"
_BACKEND_WORDS = {"local": "local processes on the auditor's machine",
                  "docker": "Docker containers on one host",
                  "remote": "a deployment reached over the network"}


def run_provenance() -> dict[str, Any]:
    """Who ran the audit where, and which commit of the tool: recorded in the run's target info.

    Names only (user and host name), never a path. The commit is ``git rev-parse HEAD`` of the
    harness's checkout, None when it is not run from one (then the package version says it).
    """
    from harness.report.bundle import _tool_commit

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = None
    return {"run_by": {"user": user, "host": socket.gethostname() or None}, "tool_commit": _tool_commit()}


@dataclass(frozen=True)
class OutOfReach:
    """Promises no check of this run could settle, for one reason.

    Attributes:
        outcome: MANUAL or NOT_APPLICABLE.
        claims: the promises' results, in the page's order.
        reason: the attestation a human must give, or the check's message.
    """

    outcome: Outcome
    claims: tuple[ClaimResult, ...]
    reason: str


@dataclass(frozen=True)
class Scope:
    """What the run audited and what it could not.

    Attributes:
        target: the target's name.
        reference: True for the bundled reference service, by its profile's name.
        kind: the target in words (reference service or a deployment, and how it runs).
        edge: the edge's base URL.
        areas_run: area → (checks that ran, checks of the area).
        areas_not_run: areas none of whose checks ran.
        out_of_reach: promises needing a human, or that do not apply, grouped by their reason.
    """

    target: str
    reference: bool
    kind: str
    edge: str
    areas_run: dict[str, tuple[int, int]]
    areas_not_run: tuple[str, ...]
    out_of_reach: tuple[OutOfReach, ...]


def scope_of(run: RunResults) -> Scope:
    """The run's scope from its target info, its claims' checks and its results."""
    name = str(run.target.get("name", "unnamed target"))
    backend = str(run.target.get("backend", "remote"))
    recorded = run.target.get("reference")
    reference = bool(recorded) if isinstance(recorded, bool) else name.startswith(REFERENCE_PROFILE_PREFIX)
    how = _BACKEND_WORDS.get(backend, f"the {backend} backend")
    kind = (f"the bundled reference service (votriz-reference) as {how}: a test system, not a production "
            f"deployment" if reference else f"a deployment described by the auditor's profile, as {how}")
    every_check = {check for claim in run.claims for check in claim.checks}
    ran = {result.check_id for result in run.results if result.claims}
    areas: dict[str, tuple[int, int]] = {}
    for check in sorted(every_check | ran):
        area = check.partition(".")[0]
        done, total = areas.get(area, (0, 0))
        areas[area] = (done + (check in ran), total + 1)
    grouped: dict[tuple[Outcome, str], list[ClaimResult]] = {}
    for claim in run.claims:
        if claim.outcome not in (Outcome.MANUAL, Outcome.NOT_APPLICABLE):
            continue
        # The catalogue's attestation text first, else what the checks that ended so said.
        messages = [r.message for r in run.results if claim.id in r.claims and r.outcome is claim.outcome]
        reasons = ([claim.manual] if claim.manual and claim.outcome is Outcome.MANUAL else []) + messages
        fallback = ("a human must attest it" if claim.outcome is Outcome.MANUAL
                    else "it does not apply to this target")
        grouped.setdefault((claim.outcome, reasons[0] if reasons else fallback), []).append(claim)
    out = [OutOfReach(outcome, tuple(claims), reason) for (outcome, reason), claims in grouped.items()]
    return Scope(name, reference, kind, str(run.target.get("edge", "")),
                 {a: n for a, n in areas.items() if n[0]}, tuple(a for a, n in areas.items() if not n[0]),
                 tuple(out))


def _named(claims: Sequence[ClaimResult], promises: Mapping[str, PlainPromise], limit: int = 4) -> str:
    """Up to ``limit`` promises by their words (shortened), and how many more."""
    words = [f"“{_short(promises[c.id].words if c.id in promises else c.text)}”" for c in claims[:limit]]
    if len(claims) > limit:
        words.append(f"{len(claims) - limit} more")
    return join_words(words)


def _short(text: str, limit: int = 70) -> str:
    text = text.rstrip(".")
    return text if len(text) <= limit else text[:limit - 1].rstrip(" ,;") + "…"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs} s" if minutes else f"{seconds:.1f} s"


def _choose(items: Sequence[object], one: str, many: str) -> str:
    return one if len(items) == 1 else many


def executive_summary(run: RunResults, promises: Mapping[str, PlainPromise]) -> list[str]:
    """A few sentences from the counts and names of the results: what was audited, what held,
    what broke, what could not be verified, what needs a human attestation."""
    scope = scope_of(run)
    summary = run.summary
    by_outcome: dict[Outcome | None, list[ClaimResult]] = {}
    for claim in run.claims:
        by_outcome.setdefault(claim.outcome, []).append(claim)
    title = run.catalogue.get("title", "the published page")
    target = "the bundled reference service" if scope.reference else "the deployment"
    judged = (f"{summary.promises_run} of its {summary.promises_total} promises were judged "
              f"(a partial run)" if summary.partial else f"all {summary.promises_total} promises were judged")
    lines = [f"This audit checked {target} “{scope.target}” against the promises of “{title}”: {judged}, "
             f"by {plural(summary.checks_total, 'check result')} in "
             f"{_duration((run.finished_at - run.started_at).total_seconds())}."]
    kept = by_outcome.get(Outcome.PASS, [])
    if kept:
        human = " or a human attested it" if any(c.attestation for c in kept) else ""
        lines.append(f"{plural(len(kept), 'promise')} held: a check observed "
                     f"{_choose(kept, 'it', 'each')} kept{human}.")
    broken = by_outcome.get(Outcome.FAIL, [])
    lines.append(f"{plural(len(broken), 'promise')} broke: {_named(broken, promises)}." if broken
                 else "No promise was observed broken.")
    unverified = by_outcome.get(Outcome.ERROR, [])
    if unverified:
        lines.append(f"{plural(len(unverified), 'promise')} could not be verified (the check could not "
                     f"observe what it needs, which is never a pass): {_named(unverified, promises)}.")
    waived = by_outcome.get(Outcome.WAIVED, [])
    if waived:
        lines.append(f"{plural(len(waived), 'promise')} broken or unverified {_choose(waived, 'is', 'are')} "
                     f"under a current waiver: {_named(waived, promises)}.")
    manual = by_outcome.get(Outcome.MANUAL, [])
    attested = [c for c in run.claims if c.attestation is not None]
    if manual or attested:
        supplied = f"; {len(attested)} {_choose(attested, 'has', 'have')} one supplied" if attested else ""
        lines.append(f"{plural(len(manual), 'promise')} {_choose(manual, 'needs', 'need')} a human "
                     f"attestation that no machine can give and {_choose(manual, 'has', 'have')} none"
                     f"{supplied}.")
    not_applicable = by_outcome.get(Outcome.NOT_APPLICABLE, [])
    if not_applicable:
        lines.append(f"{plural(len(not_applicable), 'promise')} {_choose(not_applicable, 'does', 'do')} "
                     f"not apply to this target.")
    not_run = by_outcome.get(None, [])
    if not_run:
        lines.append(f"{plural(len(not_run), 'promise')} {_choose(not_run, 'was', 'were')} not judged: "
                     f"not all of {_choose(not_run, 'its', 'their')} checks ran.")
    if scope.reference:
        lines.append("The target is the reference service shipped with the tool, so this report shows what "
                     "the tool detects; it says nothing about a production deployment.")
    return lines


@dataclass(frozen=True)
class Provenance:
    """Who ran the audit where, with what.

    Attributes:
        user, host: the auditor's user and host name (None: not recorded by this run).
        tool: name and version.
        commit: the tool's git commit (None: not recorded, or not run from a checkout).
        started, finished: UTC times.
    """

    user: str | None
    host: str | None
    tool: str
    commit: str | None
    started: dt.datetime
    finished: dt.datetime


def provenance_of(run: RunResults) -> Provenance:
    """What the run recorded about who ran it where (absent from runs of earlier versions)."""
    who = run.target.get("run_by")
    who = who if isinstance(who, dict) else {}
    commit = run.target.get("tool_commit")
    user, host = who.get("user"), who.get("host")
    return Provenance(str(user) if user else None, str(host) if host else None,
                      f"{run.tool} {run.tool_version}", str(commit) if commit else None,
                      run.started_at, run.finished_at)
