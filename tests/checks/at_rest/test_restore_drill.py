"""at_rest.restore_drill on hand-made observations: a working drill, live counts, failure."""

from __future__ import annotations

from checks.at_rest.restore_drill import restore_drill_verdict
from harness.outcomes import Outcome
from harness.policy import load_policy
from harness.probes.backups import (
    CommandRun,
    DrillObservation,
    restored_counts,
)

POLICY = load_policy()
OK_RUN = CommandRun("backup", 0, 1.0, '{"ok": true}', "")


COUNTS = {"brands": 3, "users": 2}


def _drill(**changes: object) -> DrillObservation:
    base = dict(backup=OK_RUN, drill=OK_RUN, counts_at_backup=COUNTS,
                counts_at_drill={"brands": 4, "users": 2}, changed_tables=("brands",),
                entry={"ok": True, "tables": {"brands": {"expected": 3, "restored": 3},
                                              "users": {"expected": 2, "restored": 2}}},
                restored=COUNTS, previous_drill_age_days=None)
    base.update(changes)
    return DrillObservation(**base)  # type: ignore[arg-type]


def test_drill_pass() -> None:
    verdict = restore_drill_verdict(_drill(), POLICY)
    assert verdict.outcome is Outcome.PASS
    assert "The canary changed brands after the backup" in verdict.message


def test_drill_reporting_live_counts_fails() -> None:
    live = {"brands": 4, "users": 2}
    entry = {"ok": True, "tables": {t: {"expected": n, "restored": n} for t, n in live.items()}}
    verdict = restore_drill_verdict(
_drill(entry=entry, restored=restored_counts(entry)), POLICY)
    assert verdict.outcome is Outcome.FAIL
    assert "brands: 4 restored, 3 in the backup" in verdict.message
    assert "they are the live database's counts at drill time, so nothing was restored" in \
        verdict.message


def test_drill_fails_on_failure_and_stale_history() -> None:
    failed = restore_drill_verdict(_drill(entry={"ok": False, "error": "boom"},
                                          restored={}), POLICY)
    assert failed.outcome is Outcome.FAIL and "the drill reports failure (boom)" in failed.message
    stale = restore_drill_verdict(_drill(previous_drill_age_days=45), POLICY)
    assert stale.outcome is Outcome.FAIL and "last drill was 45 days ago" in stale.message
