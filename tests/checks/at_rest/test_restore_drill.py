"""at_rest.restore_drill on hand-made observations: a working drill, live counts, failure,
the operator's drill history (none, stale, absent log) and a drill that could not be told
apart from the live database."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

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
                restored=COUNTS, previous_drill_age_days=3.0, earlier_entries=1)
    base.update(changes)
    return DrillObservation(**base)  # type: ignore[arg-type]


def test_drill_pass() -> None:
    verdict = restore_drill_verdict(_drill(), POLICY)
    assert verdict.outcome is Outcome.PASS
    assert "the canary changed brands after the backup" in verdict.message
    assert "newest successful drill before this audit was 3.0 days earlier" in verdict.message


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
    assert failed.outcome is Outcome.FAIL and "the audit's drill reports failure (boom)" in failed.message
    stale = restore_drill_verdict(_drill(previous_drill_age_days=45), POLICY)
    assert stale.outcome is Outcome.FAIL
    assert "no restore drill in the last 31 days before this audit (the newest successful " \
        "drill recorded was 45 days earlier)" in stale.message


def test_no_earlier_drill_fails_though_the_audits_own_drill_worked() -> None:
    verdict = restore_drill_verdict(_drill(previous_drill_age_days=None, earlier_entries=0),
                                    POLICY)
    assert verdict.outcome is Outcome.FAIL
    assert verdict.message.startswith("The restore drill is not done as promised: no restore "
                                      "drill in the last 31 days before this audit (the drill "
                                      "log recorded no drill).")
    assert "(The audit's own drill ran: it restored the fresh backup" in verdict.message


def test_stale_drill_of_40_days_fails() -> None:
    verdict = restore_drill_verdict(_drill(previous_drill_age_days=40.2), POLICY)
    assert verdict.outcome is Outcome.FAIL
    assert "drill recorded was 40 days earlier" in verdict.message


def test_absent_log_and_failed_entries_are_no_drill_on_record() -> None:
    absent = restore_drill_verdict(_drill(previous_drill_age_days=None, earlier_entries=0,
                                          log_absent=True), POLICY)
    assert absent.outcome is Outcome.FAIL
    assert "the drill log was absent, so no drill was recorded" in absent.message
    failed_only = restore_drill_verdict(_drill(previous_drill_age_days=None, earlier_entries=2),
                                        POLICY)
    assert failed_only.outcome is Outcome.FAIL
    assert "held 2 entries, none a successful drill" in failed_only.message


def test_drill_not_told_apart_from_the_live_database_is_error() -> None:
    verdict = restore_drill_verdict(_drill(changed_tables=(), counts_at_drill=COUNTS), POLICY)
    assert verdict.outcome is Outcome.ERROR
    assert verdict.message.startswith("Could not tell the drill apart from the live database")
    # Without any drill on record it is still a FAIL: the history breaks the promise.
    none = restore_drill_verdict(_drill(changed_tables=(), counts_at_drill=COUNTS,
                                        previous_drill_age_days=None, earlier_entries=0), POLICY)
    assert none.outcome is Outcome.FAIL
    assert "though it could not be told apart from the live database" in none.message


# --- on the shared clean stack: the drill on record from stand-up, then the log changed by hand


@pytest.mark.integration
def test_clean_stack_has_a_drill_on_record_and_a_stale_or_fifo_log_does_not_pass(
        clean_stack: Any) -> None:
    from harness.outcomes import ProbeError
    from harness.probes.backups import observe_drill, read_drill_log
    from harness.profile import load_profile
    from harness.redaction import KnownSecrets

    profile = load_profile(clean_stack.profile_path)
    log = Path(clean_stack.state_dir) / "drills.log"
    # The stand-up ran one drill of a real backup (ops backup + restore-drill).
    assert any(e.get("ok") is True for e in read_drill_log(log).entries)
    original, mode = log.read_bytes(), log.stat()
    try:
        # Given the log replaced by hand with one successful drill 40 days old
        stale = datetime.now(UTC) - timedelta(days=40)
        log.write_text(json.dumps({"time": stale.isoformat(), "ok": True}) + "\n")
        # When the drill check runs (no canary: nothing changes between backup and drill)
        verdict = restore_drill_verdict(observe_drill(profile, POLICY, KnownSecrets(), None),
                                        POLICY)
        # Then it FAILs on the history, saying the audit's own drill ran
        assert verdict.outcome is Outcome.FAIL, verdict.message
        assert "no restore drill in the last 31 days before this audit (the newest successful " \
            "drill recorded was 40 days earlier)" in verdict.message
        assert "though it could not be told apart from the live database" in verdict.message
        # Given the log removed: no drill recorded
        log.unlink()
        verdict = restore_drill_verdict(observe_drill(profile, POLICY, KnownSecrets(), None),
                                        POLICY)
        assert verdict.outcome is Outcome.FAIL, verdict.message
        assert "the drill log was absent, so no drill was recorded" in verdict.message
        # Given a FIFO where the log was: ERROR naming it, without blocking, nothing run
        log.unlink()
        os.mkfifo(log)
        with pytest.raises(ProbeError, match=r"drills\.log could not be read: it is a FIFO"):
            observe_drill(profile, POLICY, KnownSecrets(), None)
    finally:
        log.unlink(missing_ok=True)
        # Restored as found: content, mode and owner (the service's ops append to it).
        log.write_bytes(original)
        log.chmod(mode.st_mode & 0o7777)
        os.chown(log, mode.st_uid, mode.st_gid)
