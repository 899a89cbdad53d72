"""What changed between two runs: per finding and per claim.

Findings are matched by their stable ``finding_id`` (check id, claims,
subject), claims by their id. A change is a **regression** when something
newly FAILs, newly cannot be verified (newly ERROR), or is gone: a finding of
OLD with no result in NEW, or a promise judged in OLD and not run in NEW (a
run that checks less is not a run that found nothing wrong). A gate exits 1 on it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from harness.outcomes import Outcome
from harness.report.layout import load_results
from harness.results import CheckResult, ClaimResult, RunResults

_BAD = (Outcome.FAIL, Outcome.ERROR)
# A finding (matched by its finding id) or a promise (matched by its claim id).
_Judged = TypeVar("_Judged", CheckResult, ClaimResult)


class Change(enum.StrEnum):
    """How one finding or claim moved between the old and the new run.

    Attributes:
        NEW_FAIL: FAIL now, not FAIL before (or absent before).
        NEWLY_UNVERIFIABLE: ERROR now, not ERROR before (or absent before).
        FIXED: FAIL or ERROR before, present and neither now.
        CHANGED: another change of outcome (e.g. PASS → WAIVED).
        ADDED: absent before, present now, and neither FAIL nor ERROR.
        GONE: judged before, not now (its check did not run, or the promise was not run).
        UNCHANGED: the same outcome in both runs.
    """

    NEW_FAIL = "new FAIL"
    NEWLY_UNVERIFIABLE = "newly unverifiable"
    FIXED = "fixed"
    CHANGED = "changed"
    ADDED = "added"
    GONE = "gone"
    UNCHANGED = "unchanged"


REGRESSIONS = (Change.NEW_FAIL, Change.NEWLY_UNVERIFIABLE, Change.GONE)
_ORDER = list(Change)


def classify(old: Outcome | None, new: Outcome | None, *, present_old: bool = True,
             present_new: bool = True) -> Change:
    """The change from ``old`` to ``new`` (None outcome: present but not run, e.g. a claim)."""
    if not present_new or (present_old and old is not None and new is None):
        return Change.GONE
    if new is Outcome.FAIL and (not present_old or old is not Outcome.FAIL):
        return Change.NEW_FAIL
    if new is Outcome.ERROR and (not present_old or old is not Outcome.ERROR):
        return Change.NEWLY_UNVERIFIABLE
    if not present_old:
        return Change.ADDED
    if old in _BAD and new not in _BAD and new is not None:
        return Change.FIXED
    if old is new:
        return Change.UNCHANGED
    return Change.CHANGED


@dataclass(frozen=True)
class Delta:
    """One finding or claim in the diff.

    Attributes:
        key: the finding id or claim id.
        change: how it moved.
        old, new: its outcome in each run (None: absent or not run).
        message: the new run's message (the old one's when gone).
    """

    key: str
    change: Change
    old: Outcome | None
    new: Outcome | None
    message: str = ""


@dataclass(frozen=True)
class ComparedRun:
    """One of the two runs a diff compares, as the diff names it.

    Attributes:
        run_id: the run's id.
        label: how to name it (its report directory).
    """

    run_id: str
    label: str

    def named(self) -> str:
        """``LABEL (run RUN_ID)``."""
        return f"{self.label} (run {self.run_id})"


@dataclass(frozen=True)
class RunDiff:
    """The comparison of two runs.

    Attributes:
        old_run, new_run: the runs compared.
        findings: one per finding id in either run, worst change first.
        claims: one per claim id in either run, worst change first.
    """

    old_run: ComparedRun
    new_run: ComparedRun
    findings: tuple[Delta, ...]
    claims: tuple[Delta, ...]

    @property
    def regression(self) -> bool:
        """True when any finding or claim newly FAILs, newly cannot be verified, or is gone."""
        return any(d.change in REGRESSIONS for d in (*self.findings, *self.claims))

    def count(self, change: Change, *, claims: bool = False) -> int:
        return sum(1 for d in (self.claims if claims else self.findings) if d.change is change)

    def changed_findings(self) -> tuple[Delta, ...]:
        return tuple(d for d in self.findings if d.change is not Change.UNCHANGED)

    def changed_claims(self) -> tuple[Delta, ...]:
        return tuple(d for d in self.claims if d.change is not Change.UNCHANGED)


def _sorted(deltas: list[Delta]) -> tuple[Delta, ...]:
    return tuple(sorted(deltas, key=lambda d: (_ORDER.index(d.change), d.key)))


def _deltas(old: Mapping[str, _Judged], new: Mapping[str, _Judged],
            words: Callable[[_Judged], str]) -> tuple[Delta, ...]:
    """One delta per key of either run, worst change first, with the new run's words
    (the old run's when the key is gone)."""
    deltas = []
    for key in dict.fromkeys([*old, *new]):
        before, after = old.get(key), new.get(key)
        was = before.outcome if before else None
        now = after.outcome if after else None
        change = classify(was, now, present_old=before is not None, present_new=after is not None)
        latest = after or before
        deltas.append(Delta(key, change, was, now, words(latest) if latest else ""))
    return _sorted(deltas)


def diff_runs(old: RunResults, new: RunResults, *, old_label: str = "old", new_label: str = "new") -> RunDiff:
    """Compare two runs' results per finding id and per claim id."""
    findings = _deltas({r.finding_id: r for r in old.results}, {r.finding_id: r for r in new.results},
                       lambda result: result.message)
    claims = _deltas({c.id: c for c in old.claims}, {c.id: c for c in new.claims}, lambda claim: claim.text)
    return RunDiff(ComparedRun(old.run_id, old_label), ComparedRun(new.run_id, new_label),
                   findings, claims)


def diff_dirs(old_dir: Path, new_dir: Path) -> RunDiff:
    """Compare the results.json of two report directories.

    Raises:
        ReportDirError: either directory is not a report directory.
    """
    return diff_runs(load_results(old_dir), load_results(new_dir),
                     old_label=str(old_dir), new_label=str(new_dir))


def _outcome(value: Outcome | None) -> str:
    return value.value if value is not None else "—"


def regression_words(diff: RunDiff) -> str:
    """What regressed, counted: e.g. ``2 findings newly FAIL, 28 findings gone, 30 promises gone``."""
    parts = []
    for change, words in ((Change.NEW_FAIL, "newly FAIL"), (Change.NEWLY_UNVERIFIABLE, "newly unverifiable"),
                          (Change.GONE, "gone")):
        findings, claims = diff.count(change), diff.count(change, claims=True)
        if findings:
            parts.append(f"{findings} findings {words}")
        if claims:
            parts.append(f"{claims} promises {words}")
    return ", ".join(parts) or "nothing"


def diff_text(diff: RunDiff) -> str:
    """The diff as plain text, regressions first; unchanged entries are counted, not listed."""
    lines = [f"votriz-audit diff: {diff.old_run.named()} -> {diff.new_run.named()}"]
    gone = [d.key for d in (*diff.findings, *diff.claims) if d.change is Change.GONE]
    lines.append(f"REGRESSION: {regression_words(diff)}." if diff.regression
                 else "No regression: nothing newly FAILs, became unverifiable or is gone.")
    if gone:
        lines.append(f"Gone (judged in the old run, not in the new): {', '.join(gone)}")
    for title, deltas, unchanged in (
            ("Findings", diff.changed_findings(), diff.count(Change.UNCHANGED)),
            ("Claims", diff.changed_claims(), diff.count(Change.UNCHANGED, claims=True))):
        lines.append("")
        lines.append(f"{title}: {len(deltas)} changed, {unchanged} unchanged")
        for delta in deltas:
            lines.append(f"  {delta.change.value:<19} {delta.key}: {_outcome(delta.old)} -> "
                         f"{_outcome(delta.new)}")
            if delta.message and delta.change in (Change.NEW_FAIL, Change.NEWLY_UNVERIFIABLE):
                lines.append(f"  {'':<19} {delta.message[:200]}")
    return "\n".join(lines) + "\n"
