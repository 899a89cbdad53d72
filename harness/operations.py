"""The profile's operator commands: may the harness run them, and for how long.

A check that exercises the target (a backup, a prune, a restore drill, a key
rotation) runs the argv the profile names under ``[operations]``, only when
the profile allows it, within the shorter of the profile's and the policy's
command timeouts, and never after an outage of the target was seen in the run
(:func:`command_timeout` is the one step every operator command passes).
"""

from __future__ import annotations

from collections.abc import Sequence

from harness.evidence import EvidenceRecorder
from harness.health import refuse_after_outage
from harness.policy import Policy
from harness.profile import TargetProfile


def operations_unavailable(profile: TargetProfile, needs: Sequence[str],
                           by_hand: str) -> str | None:
    """Why the harness may not run the operations a check needs (a MANUAL message), or None."""
    ops = profile.operations
    missing = [name for name in needs if getattr(ops, name) is None]
    if missing:
        return (f"The profile lacks operations.{', operations.'.join(missing)}, so the harness "
                f"cannot exercise this itself. By hand: {by_hand}")
    if not ops.allow_destructive:
        return ("The profile does not allow the harness to run operations against this target "
                f"(operations.allow_destructive = false). By hand: {by_hand}")
    return None


def require_operations(profile: TargetProfile, evidence: EvidenceRecorder, needs: Sequence[str],
                       by_hand: str) -> None:
    """End the check MANUAL (:func:`operations_unavailable`'s message) unless the harness may
    run every one of the operations ``needs``."""
    reason = operations_unavailable(profile, needs, by_hand)
    if reason:
        evidence.manual(reason)


def command_timeout(profile: TargetProfile, policy: Policy) -> float:
    """The limit an operator command runs under: the profile's, capped by the policy's.

    Every operator command (rotations, backup, prune, restore drill) asks for its limit
    right before it starts; once the run has seen the service or a dependency of this
    target unavailable (:data:`harness.health.RUN_OUTAGES`), none is started any more.

    Raises:
        ProbeError: ``not run: <dependency> was unavailable at <time> (<reason>)``.
    """
    refuse_after_outage(profile)
    return min(profile.operations.timeout_s, policy.timeouts.command_s)
