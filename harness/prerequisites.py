"""What a check needs from the profile before it may observe anything.

A section the profile lacks ([hsm], [api] ...), or an operator command it
does not name or does not allow the harness to run (rotations change the
target: ``operations.allow_destructive``), ends the check MANUAL with what a
human must do instead: the promise still applies, the harness cannot see it.
"""

from __future__ import annotations

from collections.abc import Sequence

from harness.evidence import EvidenceRecorder
from harness.profile import Hsm, TargetProfile

#: What a human shows instead of the HSM custody the harness would have observed.
CUSTODY_BY_HAND = "attest that every key of the page's table is kept in the HSM under its namespace."


def require_hsm(profile: TargetProfile, evidence: EvidenceRecorder, by_hand: str = CUSTODY_BY_HAND) -> Hsm:
    """The profile's HSM; without one, the check ends MANUAL naming the access it lacks and ``by_hand``."""
    if profile.hsm is None:
        evidence.manual("This check needs HSM read: an [hsm] section (PKCS#11 module, token label, "
                        f"user PIN), and the profile has none. By hand: {by_hand}")
        raise AssertionError("unreachable")  # manual() always raises
    return profile.hsm


def require_sections(profile: TargetProfile, evidence: EvidenceRecorder, sections: Sequence[str],
                     by_hand: str) -> None:
    """End the check MANUAL unless the profile has every one of ``sections`` (``hsm``, ``api`` ...)."""
    if all(getattr(profile, name) is not None for name in sections):
        return
    names = [f"[{name}]" for name in sections]
    listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
    evidence.manual(f"This check needs the {listed} section{'s' if len(names) > 1 else ''}. "
                    f"By hand: {by_hand}")


def operator_command(profile: TargetProfile, evidence: EvidenceRecorder, name: str,
                     by_hand: str) -> tuple[str, ...]:
    """The profile's ``operations.<name>`` command, if the harness may run it; else MANUAL
    naming each of the two that is missing (the permission, the command)."""
    command: tuple[str, ...] | None = getattr(profile.operations, name)
    unnamed = f"the profile names no operations.{name} command"
    if not profile.operations.allow_destructive:
        evidence.manual(f"Destructive checks are not allowed on this target "
                        f"(operations.allow_destructive = false)"
                        f"{f', and {unnamed}' if command is None else ''}. By hand: {by_hand}")
    if command is None:
        evidence.manual(f"{unnamed[:1].upper()}{unnamed[1:]}. By hand: {by_hand}")
    assert command is not None
    return command


def rotation_command(profile: TargetProfile, evidence: EvidenceRecorder, operation: str,
                     sections: Sequence[str], by_hand: str) -> tuple[str, ...]:
    """A rotation check's preamble: the profile's ``operations.<operation>`` command
    (:func:`operator_command`) once the profile has every one of ``sections``
    (:func:`require_sections`); otherwise the check ends MANUAL with ``by_hand``."""
    command = operator_command(profile, evidence, operation, by_hand)
    require_sections(profile, evidence, sections, by_hand)
    return command
