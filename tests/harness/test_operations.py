"""May the harness run the profile's operations: MANUAL with what to do by hand when not."""

from __future__ import annotations

from harness.operations import operations_unavailable
from harness.profile import parse_profile


def _profile(extra: str = "") -> object:
    return parse_profile(f'name = "t"\n[edge]\nhost = "votriz.test"\n{extra}')


def test_operations_unavailable_is_manual_with_instructions() -> None:
    profile = _profile()
    message = operations_unavailable(profile, ("backup", "backup_dir"), "do X")  # type: ignore[arg-type]
    assert message is not None and "operations.backup, operations.backup_dir" in message
    assert message.endswith("By hand: do X")
