"""at_rest.backup_retention: backups are kept on a rolling retention.

The store is judged as found first (``harness/probes/backup_store.py``, recorded
before the audit made or pruned anything): every entry older than the retention
(plus a day's tolerance for a daily prune) FAILs, named, by its modification
time or the date in its name. Only when nothing in the store is older than the
retention is a backup taken with the operator's command, copies of it planted
beside it as older and younger than the retention, and the profile's prune command
run (``harness/probes/backups.py``), so the prune can delete nothing the audit did
not plant.
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.details import plain, plural
from harness.evidence import EvidenceRecorder
from harness.operations import require_operations
from harness.outcomes import Verdict
from harness.policy import Policy
from harness.probes.backup_store import StoreEntry, StoreObservation, store_as_found
from harness.probes.backups import RetentionObservation, observe_retention
from harness.profile import TargetProfile
from harness.redaction import KnownSecrets

#: Days past the retention an entry may reach before it is a violation: a daily
#: prune leaves a backup up to a day past the retention.
TOLERANCE_DAYS = 1.0
#: How many entries a message names; the evidence lists every one.
NAMED_IN_MESSAGE = 10


def entry_age(entry: StoreEntry, now: float) -> tuple[float, str]:
    """An entry's age in days at ``now`` and what says so (the older of its modification time
    and the date in its name)."""
    by_mtime = (now - entry.mtime) / 86400
    if entry.name_time is not None and (now - entry.name_time) / 86400 > by_mtime:
        return (now - entry.name_time) / 86400, "the date in its name"
    return by_mtime, "its modification time"


def aged_entries(store: StoreObservation, days: float) -> list[str]:
    """Entries of the store as found older than ``days``, each with its age and its source."""
    found = []
    for entry in store.entries:
        if entry.kind == "directory":
            continue
        age, source = entry_age(entry, store.observed_at)
        if age > days:
            found.append(f"{entry.path} ({age:.1f} days by {source})")
    return found


def _named(items: list[str] | tuple[str, ...]) -> str:
    shown = ", ".join(items[:NAMED_IN_MESSAGE])
    more = len(items) - NAMED_IN_MESSAGE
    return shown + (f" and {more} more (listed in the evidence)" if more > 0 else "")


def backup_retention_verdict(obs: RetentionObservation) -> Verdict:
    """No entry of the store as found is older than the retention (plus tolerance); pruning
    removes a planted backup past the retention and keeps one within it, the newest, and
    everything else that was there."""
    details: dict[str, Any] = plain(obs)
    days = obs.retention_days
    store = obs.store
    if store.error:
        return Verdict.error(f"The backup store could not be read as found: {store.error}.",
                             **details)
    aged = aged_entries(store, days + TOLERANCE_DAYS)
    if aged:
        kept = (" The audit did not run the prune, so "
                f"{'it is' if len(aged) == 1 else 'they are'} still in the store."
                if obs.trial is None else "")
        return Verdict.failed(
            f"Backups are not kept on a {days}-day rolling retention: the store as found holds "
            f"{'1 entry' if len(aged) == 1 else f'{len(aged)} entries'} older than {days} "
            f"days (+{TOLERANCE_DAYS:g} day tolerance): {_named(aged)}.{kept}", **details)
    if store.truncated:
        return Verdict.error("The backup store holds more entries than the harness walks, so "
                             "the age of every backup could not be observed.", **details)
    as_found = (f"As found, no entry of the backup store ({plural(len(store.files), 'file')}) "
                f"was older than {days} days (+{TOLERANCE_DAYS:g} day tolerance).")
    trial = obs.trial
    if trial is None:
        why = obs.not_run + (f": {_named(obs.prunable)}" if obs.prunable else "")
        # Ages within the retention do not show the prune works: the promise is a rolling
        # retention, so a prune not shown deleting is not verified.
        return Verdict.error(f"Could not exercise the prune: {why}. {as_found} Whether "
                             f"backups older than {days} days are removed was not observed.",
                             **details)
    if not trial.prune.succeeded:
        return Verdict.error(f"{as_found} The prune command failed: {trial.prune.describe()}.",
                             **details)
    problems = []
    if not trial.old_removed:
        problems.append(f"a backup older than {days} days ({trial.old_name}) was kept")
    if not trial.young_kept:
        problems.append(f"a backup within {days} days ({trial.young_name}) was deleted")
    if not trial.newest_kept:
        problems.append(f"the newest backup ({trial.newest_name}) was deleted")
    if trial.others_deleted:
        problems.append("entries within the retention that the audit did not plant were "
                        f"deleted: {_named(trial.others_deleted)}")
    if problems:
        return Verdict.failed(f"Backups are not kept on a {days}-day rolling retention: "
                              + "; ".join(problems) + ".", **details)
    return Verdict.passed(f"{as_found} Pruning removed a backup older than {days} days and "
                          "kept one within them, the newest and every other entry.", **details)


@pytest.mark.claims("REST-BACKUPS-RETENTION")
@pytest.mark.access("files", "destructive")
def check_backup_retention(request: pytest.FixtureRequest, profile: TargetProfile,
                           policy: Policy, known_secrets: KnownSecrets,
                           evidence: EvidenceRecorder) -> None:
    require_operations(
        profile, evidence, ("backup", "prune_backups", "backup_dir"),
        f"list the backup store and show no backup older than {policy.backups.retention_days} "
        "days exists while every day within them has one (storage lifecycle rule).")
    # The store as found, recorded before any backup, plant or prune of the audit.
    store = store_as_found(request, profile, known_secrets)
    verdict = backup_retention_verdict(observe_retention(profile, policy, known_secrets, store))
    evidence.attach("backup-retention", verdict.details)
    evidence.conclude(verdict)
