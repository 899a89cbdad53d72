"""A stack's state directory, as both backends treat it: never reused, and what runs in it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from system_under_test.common.host import StackError


def ensure_unused(state_dir: Path, marker: str) -> None:
    """StackError unless ``state_dir`` is absent or empty (``up`` never builds over another stack)."""
    if (state_dir / "stack.json").exists() or (state_dir / marker).exists():
        raise StackError(f"{state_dir} already holds a stack: run down first")
    if state_dir.exists() and any(state_dir.iterdir()):
        raise StackError(f"{state_dir} exists and is not empty: choose another state directory")


@dataclass(frozen=True)
class StackStatus:
    """Whether a stack's parts (processes, or containers) are running.

    Attributes:
        state_dir: the state directory.
        exists: whether it holds a stack that came up (``stack.json``).
        running: part → whether it is running (a process's pid alive, a container running).
    """

    state_dir: Path
    exists: bool
    running: dict[str, bool] = field(hash=False)

    @property
    def healthy(self) -> bool:
        """Up, and every part running."""
        return self.exists and bool(self.running) and all(self.running.values())
