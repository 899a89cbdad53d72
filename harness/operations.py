"""The profile's operator commands: may the harness run them, and for how long.

A check that exercises the target (a backup, a prune, a restore drill, a key
rotation) runs the argv the profile names under ``[operations]``, only when
the profile allows it, within the shorter of the profile's and the policy's
command timeouts.
"""

from __future__ import annotations

from collections.abc import Sequence

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


def command_timeout(profile: TargetProfile, policy: Policy) -> float:
    """The limit an operator command runs under: the profile's, capped by the policy's."""
    return min(profile.operations.timeout_s, policy.timeouts.command_s)
