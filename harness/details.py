"""What a verdict says and carries: counts put into words for its message, and
observations turned into the plain data of its details (evidence files want JSON)."""

from __future__ import annotations

import dataclasses
from typing import Any


def plain(value: Any) -> Any:
    """An observation (a frozen dataclass) as plain, JSON-able data; anything else as it is."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return value


def plural(n: int, word: str) -> str:
    """``1 column``, ``2 columns``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def counts(counter: dict[str, int]) -> str:
    """``reason n, reason n``, the most frequent first."""
    return ", ".join(f"{reason} {n}" for reason, n in sorted(counter.items(), key=lambda i: -i[1]))
