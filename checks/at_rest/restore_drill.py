"""at_rest.restore_drill: the restore drill restores the backup it names, recently.

The harness counts rows, takes a backup, changes the database through the
canary and runs the drill (``harness/probes/backups.py``).
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.details import plain
from harness.evidence import EvidenceRecorder
from harness.operations import require_operations
from harness.outcomes import Verdict
from harness.policy import Policy
from harness.probes.backups import DrillObservation, observe_drill
from harness.probes.canary_account import canary_and_note
from harness.profile import TargetProfile
from harness.redaction import KnownSecrets


def restore_drill_verdict(obs: DrillObservation, policy: Policy) -> Verdict:
    """The drill restores the backup it names (its counts are the backup's, not the live
    database's), reports success, and the previous drill is recent enough."""
    details: dict[str, Any] = plain(obs)
    if not obs.backup.succeeded:
        return Verdict.error(f"The backup before the drill failed: {obs.backup.describe()}.",
                             **details)
    if obs.drill is None:
        return Verdict.error("The drill was not run.", **details)
    if obs.entry is None:
        if not obs.drill.succeeded:
            return Verdict.failed(f"The restore drill failed: {obs.drill.describe()}.", **details)
        return Verdict.failed("The restore drill wrote no entry to the drill log, so there is no "
                              "record that it restored anything.", **details)
    problems = []
    if obs.entry.get("ok") is not True or not obs.drill.succeeded:
        reason = obs.entry.get("error") or obs.drill.describe()
        problems.append(f"the drill reports failure ({reason})")
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
    max_age = policy.backups.max_drill_age_days
    if obs.previous_drill_age_days is not None and obs.previous_drill_age_days > max_age:
        problems.append(f"before this audit the last drill was {obs.previous_drill_age_days:.0f} "
                        f"days ago (policy: at most {max_age})")
    if problems:
        return Verdict.failed("The restore drill does not show a working restore: "
                              + "; ".join(problems) + ".", **details)
    discriminating = (f" The canary changed {', '.join(obs.changed_tables)} after the backup, "
                      "and the drill reported the backup's counts, not the live ones."
                      if obs.changed_tables else
                      " (The database could not be changed between backup and drill, so a drill "
                      "reporting live counts could not be told apart.)")
    previous = (f" The previous drill was {obs.previous_drill_age_days:.1f} days earlier."
                if obs.previous_drill_age_days is not None
                else " There was no drill before this audit's own.")
    return Verdict.passed(
        f"The drill restored the fresh backup with row counts matching the database at backup "
        f"time in all {len(obs.counts_at_backup)} tables.{discriminating}{previous}", **details)


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
