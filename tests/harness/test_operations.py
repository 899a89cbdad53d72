"""May the harness run the profile's operations: MANUAL with what to do by hand when not."""

from __future__ import annotations

from harness.operations import operations_unavailable, require_operations
from harness.profile import parse_profile


def _profile(extra: str = "") -> object:
    return parse_profile(f'name = "t"\n[edge]\nhost = "votriz.test"\n{extra}')


def test_operations_unavailable_is_manual_with_instructions() -> None:
    profile = _profile()
    message = operations_unavailable(profile, ("backup", "backup_dir"), "do X")  # type: ignore[arg-type]
    assert message is not None and "operations.backup, operations.backup_dir" in message
    assert message.endswith("By hand: do X")


class _Evidence:
    def __init__(self) -> None:
        self.manual_messages: list[str] = []

    def manual(self, message: str) -> None:
        self.manual_messages.append(message)


def test_require_operations_ends_the_check_manual_only_when_one_is_missing() -> None:
    evidence = _Evidence()
    require_operations(_profile(), evidence, ("backup",), "do X")  # type: ignore[arg-type]
    assert len(evidence.manual_messages) == 1 and evidence.manual_messages[0].endswith("By hand: do X")
    allowed = _profile('[operations]\nallow_destructive = true\nbackup = ["b"]\n')
    require_operations(allowed, evidence, ("backup",), "do X")  # type: ignore[arg-type]
    assert len(evidence.manual_messages) == 1
