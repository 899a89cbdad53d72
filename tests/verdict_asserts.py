"""The assertion the check tests make of a verdict: its outcome and what its message says, in
one call whose failure shows the whole verdict (outcome and message), not only the part that
differed."""

from __future__ import annotations

from collections.abc import Sequence

from harness.outcomes import Outcome, Verdict


def assert_verdict(verdict: Verdict, outcome: Outcome, *, starts: str = "", ends: str = "",
                   says: Sequence[str] = ()) -> Verdict:
    """Assert ``verdict`` ended ``outcome`` with a message that starts with ``starts``, ends with
    ``ends`` and holds each of ``says``; return it for what the test asserts next."""
    shown = f"{verdict.outcome.value}: {verdict.message!r}"
    assert verdict.outcome is outcome, f"expected {outcome.value}, got {shown}"
    assert verdict.message.startswith(starts), f"expected a message starting {starts!r}, got {shown}"
    assert verdict.message.endswith(ends), f"expected a message ending {ends!r}, got {shown}"
    missing = [part for part in says if part not in verdict.message]
    assert not missing, f"{missing} not in the message of {shown}"
    return verdict
