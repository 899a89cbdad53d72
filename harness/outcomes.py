"""Typed verdicts: what a check concluded about one promise, and why.

A check never returns a bare bool. It returns (or raises) one of the outcomes
below, always with a human reason. "The check could not run" (ERROR) is a
different value from "the system broke the promise" (FAIL), and neither is
ever folded into PASS.
"""

from __future__ import annotations

import enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Outcome(enum.StrEnum):
    """The six outcomes a check can reach.

    Attributes:
        PASS: the promise was observed to hold.
        FAIL: the system was observed to break the promise.
        ERROR: the check could not observe what it needs (could not verify).
        NOT_APPLICABLE: the promise does not apply to this target.
        MANUAL: no machine can see it; a human attestation is needed.
        WAIVED: a current waiver covers this check; the check still ran.
    """

    PASS = "PASS"
    FAIL = "FAIL"
    ERROR = "ERROR"
    NOT_APPLICABLE = "NOT_APPLICABLE"
    MANUAL = "MANUAL"
    WAIVED = "WAIVED"


class Verdict(BaseModel):
    """The judgement of one check over its observations.

    Attributes:
        outcome: what the check concluded.
        message: one or two human sentences that say why (no secrets).
        details: structured evidence supporting the message (JSON-able, no secrets).
        subject: what was judged, when a check judges several things
            (e.g. ``channels.access_token_enc``); part of the finding id.
    """

    model_config = ConfigDict(frozen=True)

    outcome: Outcome
    message: str
    details: dict[str, Any] = Field(default_factory=dict)
    subject: str = ""

    @classmethod
    def passed(cls, message: str, **details: Any) -> Verdict:
        return cls(outcome=Outcome.PASS, message=message, details=details)

    @classmethod
    def failed(cls, message: str, **details: Any) -> Verdict:
        return cls(outcome=Outcome.FAIL, message=message, details=details)

    @classmethod
    def error(cls, message: str, **details: Any) -> Verdict:
        return cls(outcome=Outcome.ERROR, message=message, details=details)

    @classmethod
    def not_applicable(cls, message: str, **details: Any) -> Verdict:
        return cls(outcome=Outcome.NOT_APPLICABLE, message=message, details=details)

    @classmethod
    def manual(cls, message: str, **details: Any) -> Verdict:
        return cls(outcome=Outcome.MANUAL, message=message, details=details)


class CheckOutcome(Exception):
    """Raised inside a check to end it with a given verdict.

    The pytest plugin turns it into the check's result. Checks normally call
    :func:`conclude`, which raises this for anything but PASS and returns for
    PASS, so a forgotten verdict cannot silently pass.
    """

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(f"{verdict.outcome.value}: {verdict.message}")
        self.verdict = verdict


class ProbeError(Exception):
    """A probe could not observe what it was asked to (unreachable, refused, timed out).

    Its message is precise and safe to print (never contains a secret). The
    plugin reports any ProbeError escaping a check as ERROR with this message.
    """
