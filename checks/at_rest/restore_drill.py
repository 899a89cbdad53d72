"""at_rest.restore_drill: the operator drills a restore monthly, and a drill restores the
backup it names.

The harness reads the drill log as found (the operator's drills), then counts
rows, takes a backup, changes the database through the canary and runs its own
drill (``harness/probes/backups.py``).
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.details import plain, plural
from harness.evidence import EvidenceRecorder
from harness.operations import require_operations
from harness.outcomes import Verdict
from harness.policy import Policy
from harness.probes.backups import DrillObservation, observe_drill
from harness.probes.canary_account import canary_and_note
from harness.profile import TargetProfile
from harness.redaction import KnownSecrets


def _history_problem(obs: DrillObservation, max_age: int) -> str:
    """Why the operator's drill history breaks the promise, or ``""`` when it keeps it."""
    if obs.previous_drill_age_days is not None and obs.previous_drill_age_days <= max_age:
        return ""
    if obs.log_absent:
        found = "the drill log was absent, so no drill was recorded"
    elif obs.previous_drill_age_days is not None:
        found = (f"the newest successful drill recorded was "
                 f"{obs.previous_drill_age_days:.0f} days earlier")
    elif obs.earlier_entries:
        found = (f"the drill log held {obs.earlier_entries} entries, none a successful drill "
                 "with a time")
    else:
        found = "the drill log recorded no drill"
    return f"no restore drill in the last {max_age} days before this audit ({found}{_own(obs)})"


def _unrecorded(obs: DrillObservation) -> str:
    """That this audit's drill is not in the ledger, so a next audit may count it (or ``""``)."""
    if not obs.ledger_unwritten:
        return ""
    return (f" (This audit's drill could not be added to the ledger of its own drills "
            f"({obs.ledger_unwritten}): unless the drill log marks it, a next audit may count it.)")


def _own(obs: DrillObservation) -> str:
    """The audit's own earlier drills left out of the history, in words (``""`` when none)."""
    if not obs.own_earlier:
        return ""
    return f"; {plural(obs.own_earlier, 'drill')} run by earlier audits themselves left out"


def restore_drill_verdict(obs: DrillObservation, policy: Policy) -> Verdict:
    """The operator drills at least every ``max_drill_age_days`` (the log as found), and the
    audit's own drill restores the backup it names: its counts are the backup's, not the live
    database's, which a change between backup and drill tells apart."""
    details: dict[str, Any] = plain(obs)
    if not obs.backup.succeeded:
        return Verdict.error(f"The backup before the drill failed: {obs.backup.describe()}.",
                             **details)
    if obs.drill is None:
        return Verdict.error("The drill was not run.", **details)
    max_age = policy.backups.max_drill_age_days
    history = _history_problem(obs, max_age)
    if obs.entry is None:
        own = (f"the audit's restore drill failed: {obs.drill.describe()}"
               if not obs.drill.succeeded else
               "the audit's restore drill wrote no entry to the drill log, so there is no "
               "record that it restored anything")
        return Verdict.failed("The restore drill does not show a working restore: "
                              + "; ".join(p for p in (history, own) if p) + ".", **details)
    problems = []
    if obs.entry.get("ok") is not True or not obs.drill.succeeded:
        reason = obs.entry.get("error") or obs.drill.describe()
        problems.append(f"the audit's drill reports failure ({reason})")
    if not obs.restored:
        problems.append("the drill's log entry does not say how many rows it restored")
    mismatched = {t: (n, obs.restored.get(t)) for t, n in obs.counts_at_backup.items()
                  if obs.restored and obs.restored.get(t) != n}
    if mismatched:
        live = [t for t in obs.changed_tables
                if obs.restored.get(t) == obs.counts_at_drill.get(t)]
        listed = ", ".join(f"{t}: {got} restored, {want} in the backup"
                           for t, (want, got) in sorted(mismatched.items()))
        problems.append(f"the restored row counts are not the backup's ({listed})"
                        + (f"; for {', '.join(live)} they are the live database's counts at "
                           "drill time, so nothing was restored" if live else ""))
    if problems:
        return Verdict.failed("The restore drill does not show a working restore: "
                              + "; ".join(([history] if history else []) + problems) + ".",
                              **details)
    tables = len(obs.counts_at_backup)
    if history:
        told = ("" if obs.changed_tables else
                ", though it could not be told apart from the live database")
        return Verdict.failed(
            f"The restore drill is not done as promised: {history}. (The audit's own drill "
            f"ran: it restored the fresh backup with the backup's row counts in all {tables} "
            f"tables{told}.)" + _unrecorded(obs), **details)
    if obs.ledger_unread:
        return Verdict.error(
            f"The drill log's newest successful drill before this audit was "
            f"{obs.previous_drill_age_days:.1f} days earlier, but the ledger of the audit's own "
            f"drills could not be read ({obs.ledger_unread}), so it may be an earlier audit's "
            "drill, not the operator's." + _unrecorded(obs), **details)
    if not obs.changed_tables:
        return Verdict.error(
            "Could not tell the drill apart from the live database: nothing changed the "
            "database between the backup and the drill, so a drill that restored nothing and "
            "reported the live counts would read the same. The drill log's newest successful "
            f"drill before this audit was {obs.previous_drill_age_days:.1f} days earlier."
            + _unrecorded(obs), **details)
    return Verdict.passed(
        f"The drill log's newest successful drill before this audit was "
        f"{obs.previous_drill_age_days:.1f} days earlier (policy: at most {max_age}{_own(obs)}). The "
        f"audit's drill restored the fresh backup with row counts matching the database at "
        f"backup time in all {tables} tables; the canary changed "
        f"{', '.join(obs.changed_tables)} after the backup, and the drill reported the "
        "backup's counts, not the live ones." + _unrecorded(obs), **details)


@pytest.mark.claims("REST-BACKUPS-DRILL")
@pytest.mark.access("api", "database", "files", "destructive")
def check_restore_drill(request: pytest.FixtureRequest, profile: TargetProfile, policy: Policy,
                        known_secrets: KnownSecrets, evidence: EvidenceRecorder) -> None:
    require_operations(
        profile, evidence, ("backup", "restore_drill", "drill_log"),
        f"show the drill log's entries of the last {policy.backups.max_drill_age_days} days, each "
        "restoring a named backup into a scratch database with row counts compared.")
    if profile.database is None:
        evidence.manual("The profile names no database to compare the drill's row counts with. "
                        "By hand: attach the drill log's last entry and the live row counts.")
    session, _ = canary_and_note(request, profile)
    change = None
    if session is not None:
        def change() -> None:
            # A brand adds rows to brands and analytics_counters after the backup.
            session.ensure_session()
            session.api.create_brand(f"votriz-audit drill marker {session.canary.run_id}", "audit")
    verdict = restore_drill_verdict(observe_drill(profile, policy, known_secrets, change), policy)
    evidence.attach("restore-drill", verdict.details)
    evidence.conclude(verdict)
