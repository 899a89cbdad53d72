"""at_rest.backup_retention on hand-made observations: both sides."""

from __future__ import annotations

from checks.at_rest.backup_retention import backup_retention_verdict
from harness.outcomes import Outcome
from harness.probes.backups import (
    CommandRun,
    RetentionObservation,
)

OK_RUN = CommandRun("backup", 0, 1.0, '{"ok": true}', "")


def _retention(**changes: object) -> RetentionObservation:
    base = dict(prune=OK_RUN, retention_days=30, old_name="old", old_removed=True,
                young_name="young", young_kept=True, newest_name="new", newest_kept=True)
    base.update(changes)
    return RetentionObservation(**base)  # type: ignore[arg-type]


def test_retention_both_sides() -> None:
    assert backup_retention_verdict(_retention()).outcome is Outcome.PASS
    bad = backup_retention_verdict(_retention(old_removed=False))
    assert bad.outcome is Outcome.FAIL
    assert "a backup older than 30 days (old) was kept" in bad.message
