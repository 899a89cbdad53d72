"""at_rest.backup_retention on hand-made observations: the store as found, then the prune."""

from __future__ import annotations

from checks.at_rest.backup_retention import backup_retention_verdict
from harness.outcomes import Outcome
from harness.probes.backup_store import StoreEntry, StoreObservation
from harness.probes.backups import CommandRun, PruneTrial, RetentionObservation

OK_RUN = CommandRun("prune_backups", 0, 1.0, '{"ok": true}', "")
NOW = 1_800_000_000.0
DAY = 86400.0


def _entry(path: str, age_days: float, name_age_days: float | None = None,
           kind: str = "file") -> StoreEntry:
    return StoreEntry(path, kind, 4000, NOW - age_days * DAY,
                      None if name_age_days is None else NOW - name_age_days * DAY)


def _store(*entries: StoreEntry, **changes: object) -> StoreObservation:
    return StoreObservation("/backups", NOW, entries, **changes)  # type: ignore[arg-type]


def _trial(**changes: object) -> PruneTrial:
    base = dict(prune=OK_RUN, old_name="old", old_removed=True, young_name="young",
                young_kept=True, newest_name="new", newest_kept=True)
    base.update(changes)
    return PruneTrial(**base)  # type: ignore[arg-type]


def _retention(store: StoreObservation | None = None, trial: PruneTrial | None = None,
               **changes: object) -> RetentionObservation:
    return RetentionObservation(store or _store(_entry("votriz-a.dump.enc", 2)), 30,
                                trial, **changes)  # type: ignore[arg-type]


def test_retention_both_sides() -> None:
    ok = backup_retention_verdict(_retention(trial=_trial()))
    assert ok.outcome is Outcome.PASS
    assert ok.message == ("As found, no entry of the backup store (1 file) was older than 30 "
                          "days (+1 day tolerance). Pruning removed a backup older than 30 days "
                          "and kept one within them, the newest and every other entry.")
    bad = backup_retention_verdict(_retention(trial=_trial(old_removed=False)))
    assert bad.outcome is Outcome.FAIL
    assert "a backup older than 30 days (old) was kept" in bad.message


def test_aged_entries_as_found_fail_named_by_mtime_or_name_and_are_left_in_place() -> None:
    store = _store(_entry("votriz-a.dump.enc", 2), _entry("copy.dump.enc", 40),
                   _entry("votriz-20250101T000000Z.dump.enc", 1, name_age_days=45.5),
                   _entry("sub", 90, kind="directory"), _entry("link", 33, kind="symlink"))
    verdict = backup_retention_verdict(_retention(store, None, not_run="the store as found "
                                                  "holds entries older than 30 days"))
    assert verdict.outcome is Outcome.FAIL
    assert verdict.message == (
        "Backups are not kept on a 30-day rolling retention: the store as found holds 3 entries "
        "older than 30 days (+1 day tolerance): copy.dump.enc (40.0 days by its modification "
        "time), votriz-20250101T000000Z.dump.enc (45.5 days by the date in its name), link "
        "(33.0 days by its modification time). The audit did not run the prune, so they are "
        "still in the store.")


def test_within_tolerance_without_the_prune_is_error_not_pass() -> None:
    # Given an entry 30.5 days old (inside the 1-day tolerance) that kept the prune from running
    store = _store(_entry("votriz-a.dump.enc", 30.5))
    verdict = backup_retention_verdict(_retention(
        store, None, not_run="the prune would be entitled to delete entries the audit did not "
        "create, so it was not run", prunable=("votriz-a.dump.enc",)))
    # Then retention was never shown to work: ERROR, saying why
    assert verdict.outcome is Outcome.ERROR
    assert verdict.message.startswith(
        "Could not exercise the prune: the prune would be entitled to delete entries the audit "
        "did not create, so it was not run: votriz-a.dump.enc. As found, no entry of the backup "
        "store (1 file) was older than 30 days (+1 day tolerance).")
    assert verdict.message.endswith("Whether backups older than 30 days are removed was not "
                                    "observed.")


def test_prune_deleting_what_the_audit_did_not_plant_fails() -> None:
    verdict = backup_retention_verdict(_retention(trial=_trial(others_deleted=("keep.enc",),
                                                               young_kept=False)))
    assert verdict.outcome is Outcome.FAIL
    assert "a backup within 30 days (young) was deleted" in verdict.message
    assert "entries within the retention that the audit did not plant were deleted: keep.enc" \
        in verdict.message


def test_unreadable_or_truncated_store_and_failed_prune_are_errors() -> None:
    unread = backup_retention_verdict(_retention(_store(error="/backups cannot be listed")))
    assert unread.outcome is Outcome.ERROR and "could not be read as found" in unread.message
    cut = backup_retention_verdict(_retention(_store(truncated=True), _trial()))
    assert cut.outcome is Outcome.ERROR
    failed = CommandRun("prune_backups", 2, 0.1, "", "boom")
    broke = backup_retention_verdict(_retention(trial=_trial(prune=failed)))
    assert broke.outcome is Outcome.ERROR
    assert "The prune command failed: prune_backups exited 2: boom." in broke.message
    # An aged entry is a FAIL even when the walk was cut: what was seen is enough.
    aged = backup_retention_verdict(_retention(_store(_entry("x", 50), truncated=True)))
    assert aged.outcome is Outcome.FAIL


def test_evidence_records_the_store_as_found_first() -> None:
    verdict = backup_retention_verdict(_retention(trial=_trial()))
    assert next(iter(verdict.details)) == "store"
    assert verdict.details["store"]["entries"][0]["path"] == "votriz-a.dump.enc"
