"""Waivers: a documented, expiring decision to accept a failing check.

A waiver file is TOML with ``[[waiver]]`` tables. A waiver needs a check id,
a justification, an approver and an expiry date. A current waiver turns the
check's FAIL or ERROR into WAIVED (the original outcome is kept in the
result); an expired one is ignored and the result says so. A malformed file
is refused before any check runs, as is a field that is blank (whitespace
only) and an expiry further ahead than the policy allows
(``waivers.max_days_ahead``).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from harness.tomlfile import load_toml_model

#: Shortest justification accepted, counted without surrounding whitespace.
MIN_JUSTIFICATION = 10


class WaiverError(Exception):
    """The waiver file is missing or malformed."""


class Waiver(BaseModel):
    """One accepted exception.

    Attributes:
        check: the check id it covers (e.g. ``transit.hsts``).
        justification: why the failure is accepted (required, at least 10 characters
            besides surrounding whitespace).
        approved_by: who accepted it (not blank).
        expires: the last day it applies (inclusive).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    check: str = Field(min_length=3)
    justification: str
    approved_by: str
    expires: dt.date

    @field_validator("check", "justification", "approved_by")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        # Whitespace is no justification and no approver: judge what is left without it.
        if not value.strip():
            raise ValueError("is blank")
        return value.strip()

    @field_validator("justification")
    @classmethod
    def _says_why(cls, value: str) -> str:
        if len(value) < MIN_JUSTIFICATION:
            raise ValueError(f"must say why in at least {MIN_JUSTIFICATION} characters")
        return value

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


def load_waivers(path: Path | None, *, known_checks: set[str] | None = None,
                 max_days_ahead: int | None = None, today: dt.date | None = None) -> WaiverSet:
    """Read and validate a waiver file (an empty set when ``path`` is None).

    With ``max_days_ahead``, a waiver expiring more than that many days after ``today``
    (default: today in UTC) is refused.

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
    if max_days_ahead is not None:
        latest = (today or dt.datetime.now(dt.UTC).date()) + dt.timedelta(days=max_days_ahead)
        for index, waiver in enumerate(waivers.waiver):
            if waiver.expires > latest:
                raise WaiverError(f"{path}: waiver[{index}].expires: {waiver.expires} is more than "
                                  f"{max_days_ahead} days ahead (latest accepted {latest}; policy "
                                  f"waivers.max_days_ahead)")
    return waivers
