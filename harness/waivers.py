"""Waivers: a documented, expiring decision to accept a failing check.

A waiver file is TOML with ``[[waiver]]`` tables. A waiver needs a check id,
a justification, an approver and an expiry date. A current waiver turns the
check's FAIL or ERROR into WAIVED (the original outcome is kept in the
result); an expired one is ignored and the result says so. A malformed file
is refused before any check runs.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from harness.tomlfile import load_toml_model


class WaiverError(Exception):
    """The waiver file is missing or malformed."""


class Waiver(BaseModel):
    """One accepted exception.

    Attributes:
        check: the check id it covers (e.g. ``transit.hsts``).
        justification: why the failure is accepted (required, not blank).
        approved_by: who accepted it.
        expires: the last day it applies (inclusive).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    check: str = Field(min_length=3)
    justification: str = Field(min_length=10)
    approved_by: str = Field(min_length=1)
    expires: dt.date

    def is_current(self, today: dt.date) -> bool:
        return today <= self.expires


class WaiverSet(BaseModel):
    """All waivers of one file.

    Attributes:
        waiver: the waivers, in file order.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    waiver: tuple[Waiver, ...] = ()

    def for_check(self, check_id: str) -> Waiver | None:
        """The waiver naming this check with the latest expiry, if any."""
        matching = [w for w in self.waiver if w.check == check_id]
        return max(matching, key=lambda w: w.expires) if matching else None


def load_waivers(path: Path | None, *, known_checks: set[str] | None = None) -> WaiverSet:
    """Read and validate a waiver file (an empty set when ``path`` is None).

    Raises:
        WaiverError: one line per problem, naming the file and the waiver.
    """
    if path is None:
        return WaiverSet()
    waivers = load_toml_model(path, WaiverSet, what="waivers", error=WaiverError)
    if known_checks is not None:
        for index, waiver in enumerate(waivers.waiver):
            if waiver.check not in known_checks:
                raise WaiverError(f"{path}: waiver[{index}].check: unknown check {waiver.check!r}")
    return waivers
