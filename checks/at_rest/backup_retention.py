"""at_rest.backup_retention: backups are kept on a rolling retention.

Copies of the newest backup are planted as older and younger than the
retention, and the profile's prune command is run (``harness/probes/backups.py``).
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.details import plain
from harness.evidence import EvidenceRecorder
from harness.operations import operations_unavailable
from harness.outcomes import Verdict
from harness.policy import Policy
from harness.probes.backups import RetentionObservation, observe_retention
from harness.profile import TargetProfile
from harness.redaction import KnownSecrets


def backup_retention_verdict(obs: RetentionObservation) -> Verdict:
    """Pruning removes backups past the retention and keeps the ones within it."""
    details: dict[str, Any] = plain(obs)
    if not obs.prune.succeeded:
        return Verdict.error(f"The prune command failed: {obs.prune.describe()}.", **details)
    problems = []
    if not obs.old_removed:
        problems.append(f"a backup older than {obs.retention_days} days ({obs.old_name}) "
                        "was kept")
    if not obs.young_kept:
        problems.append(f"a backup within {obs.retention_days} days ({obs.young_name}) was "
                        "deleted")
    if not obs.newest_kept:
        problems.append(f"the newest backup ({obs.newest_name}) was deleted")
    if problems:
        return Verdict.failed(f"Backups are not kept on a {obs.retention_days}-day rolling "
                              "retention: " + "; ".join(problems) + ".", **details)
    return Verdict.passed(f"Pruning removed a backup older than {obs.retention_days} days and "
                          "kept one within them and the newest.", **details)


@pytest.mark.claims("REST-BACKUPS-RETENTION")
def check_backup_retention(profile: TargetProfile, policy: Policy, known_secrets: KnownSecrets,
                           evidence: EvidenceRecorder) -> None:
    reason = operations_unavailable(
        profile, ("backup", "prune_backups", "backup_dir"),
        f"list the backup store and show no backup older than {policy.backups.retention_days} "
        "days exists while every day within them has one (storage lifecycle rule).")
    if reason:
        evidence.manual(reason)
    verdict = backup_retention_verdict(observe_retention(profile, policy, known_secrets))
    evidence.attach("backup-retention", verdict.details)
    evidence.conclude(verdict)
