"""The audit's own restore drills are left out of the operator's drill history: by the marker a
drill records, or by this machine's ledger; a gate that failed for want of a drill does not pass
when simply run again."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from checks.at_rest.restore_drill import restore_drill_verdict
from harness.policy import load_policy
from harness.probes import backups
from harness.probes.own_drills import LEDGER_FILE, read_own_drills, remember_own_drill
from harness.profile import TargetProfile
from harness.redaction import KnownSecrets

#: An operator's drill command: restores (here: pretends to) and appends its entry to the log;
#: with ``--records`` it writes who asked, as the reference's drill does.
DRILL = """
import datetime, json, os, sys
entry = {"time": datetime.datetime.now(datetime.UTC).isoformat(), "ok": True,
         "tables": {"users": {"restored": 10}, "brands": {"restored": 5}}}
if "--records" in sys.argv and os.environ.get("VOTRIZ_AUDIT_RUN"):
    entry["requested_by"] = os.environ["VOTRIZ_AUDIT_RUN"]
with open(sys.argv[1], "a") as log:
    log.write(json.dumps(entry) + "\\n")
"""


def _audit_twice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *extra: str) -> list[str]:
    """Two audits back to back of an operator who never drilled; each run's verdict, in words."""
    log = tmp_path / "drills.log"
    profile = TargetProfile.model_validate({
        "name": "t", "backend": "remote", "edge": {"host": "votriz.test"},
        "operations": {"allow_destructive": True, "backup": ["true"], "drill_log": str(log),
                       "restore_drill": [sys.executable, "-c", DRILL, str(log), *extra]}})
    counts = {"users": 10, "brands": 5}
    monkeypatch.setattr(backups, "_table_counts", lambda *_: dict(counts))
    said = []
    for _ in range(2):
        counts["brands"] = 5

        def change() -> None:  # the canary adds a brand after the backup
            counts["brands"] += 1

        verdict = restore_drill_verdict(backups.observe_drill(profile, load_policy(), KnownSecrets(), change),
                                        load_policy())
        said.append(f"{verdict.outcome.value}: {verdict.message}")
    return said


@pytest.mark.parametrize("records", [False, True], ids=["ledger", "marker"])
def test_a_second_audit_does_not_count_the_first_audits_drill(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              records: bool) -> None:
    # Given a ledger of this test's own (for the marker case: none at all on the second run's machine)
    monkeypatch.setenv("VOTRIZ_AUDIT_STATE_DIR", str(tmp_path / "state"))
    if records:
        monkeypatch.setattr(backups, "remember_own_drill", lambda *_: "")
    # When two audits run back to back
    first, second = _audit_twice(tmp_path, monkeypatch, *(["--records"] if records else []))
    # Then both FAIL for want of an operator's drill; the second says it left the first's out
    assert first.startswith("FAIL: The restore drill is not done as promised: no restore drill in the "
                            "last 31 days before this audit (the drill log was absent"), first
    assert second.startswith("FAIL: The restore drill is not done as promised: no restore drill"), second
    assert "(the drill log recorded no drill; 1 drill run by earlier audits themselves left out)" in second


def test_an_operators_drill_still_counts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a drill the operator ran yesterday (no marker, not in the ledger)
    monkeypatch.setenv("VOTRIZ_AUDIT_STATE_DIR", str(tmp_path / "state"))
    import datetime
    yesterday = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)
    (tmp_path / "drills.log").write_text(json.dumps({"time": yesterday.isoformat(), "ok": True}) + "\n")
    # When two audits run, then both PASS on it, the second leaving the first audit's drill out
    first, second = _audit_twice(tmp_path, monkeypatch)
    assert first.startswith("PASS: The drill log's newest successful drill before this audit was 1.0 days "
                            "earlier (policy: at most 31). The"), first
    assert "1.0 days earlier (policy: at most 31; 1 drill run by earlier audits themselves left out)" in second


def test_the_ledger_is_per_log_refuses_a_planted_link_and_never_raises(tmp_path: Path) -> None:
    entry = {"time": "2026-12-01T00:00:00+00:00", "ok": True}
    state = tmp_path / "state"
    assert remember_own_drill(tmp_path / "a.log", entry, state) == ""
    assert read_own_drills(tmp_path / "a.log", state).split([entry, {"ok": True}]) == ([{"ok": True}], 1)
    assert read_own_drills(tmp_path / "b.log", state).split([entry]) == ([entry], 0)
    # A link planted in place of the ledger is not followed for writing; a FIFO is not read
    (state / LEDGER_FILE).unlink()
    (state / LEDGER_FILE).symlink_to(tmp_path / "elsewhere")
    assert "could not be written" in remember_own_drill(tmp_path / "a.log", entry, state)
    assert not (tmp_path / "elsewhere").exists()
    (state / LEDGER_FILE).unlink()
    os.mkfifo(state / LEDGER_FILE)
    found = read_own_drills(tmp_path / "a.log", state)
    assert found.digests == frozenset() and "a FIFO" in found.problem


def test_a_ledger_that_cannot_be_kept_is_said_and_one_that_cannot_be_read_is_never_a_pass(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a state directory under a regular file: the ledger can be neither written nor read
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("VOTRIZ_AUDIT_STATE_DIR", str(tmp_path / "file" / "state"))
    first, second = _audit_twice(tmp_path, monkeypatch)
    # Then the first run says its drill could not be recorded; the second, which cannot tell the
    # first's drill from an operator's (nothing marks it), is ERROR, not PASS
    assert first.startswith("FAIL: ") and "could not be added to the ledger of its own drills" in first
    assert second.startswith("ERROR: The drill log's newest successful drill before this audit was 0.0 days "
                             "earlier, but the ledger of the audit's own drills could not be read"), second
