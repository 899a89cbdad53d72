"""Sampled scans: what a uniform random sample of a table's rows says about all of them.

A scan with the policy's ``[scan] sample_rows`` judges a uniform random sample
instead of every row (PostgreSQL's ``TABLESAMPLE BERNOULLI``: each row is drawn
independently with the same probability, so every row is equally likely to be
judged, and given the number drawn every set of that many rows is equally
likely). A violation found in the sample is a violation; no violation in the
sample supports only a bound, which the check states with its verdict, marked
SAMPLED.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

#: The confidence of the bound a sampled scan states.
SAMPLE_CONFIDENCE = 0.99


def violation_bound(sampled: int, confidence: float = SAMPLE_CONFIDENCE) -> float:
    """The fraction of rows that, with ``confidence``, is not exceeded by the rows that
    violate, when ``sampled`` rows drawn uniformly at random showed no violation:
    ``1 - (1 - confidence) ** (1 / sampled)`` (1.0 for no rows).

    If a fraction ``p`` of the rows violated, n independent uniform draws would all miss
    them with probability ``(1 - p) ** n``; that is at most ``1 - confidence`` for every
    ``p`` at or above the bound. Draws without replacement (a sample of distinct rows)
    miss them even less often, so the bound holds for them too.
    """
    if sampled <= 0:
        return 1.0
    return -math.expm1(math.log1p(-confidence) / sampled)


@dataclass(frozen=True)
class SampleNote:
    """How a scan sampled its table instead of reading every row.

    Attributes:
        table: the table sampled.
        method: how rows were drawn, in words.
        percent: the chance each row had of being drawn, in percent.
        rows_in_table: the table's rows (the planner's estimate when counting them would cost
            a scan of its own; see ``rows_counted``).
        rows_counted: whether ``rows_in_table`` is an exact count.
        rows_sampled: rows drawn and judged.
    """

    table: str
    method: str
    percent: float
    rows_in_table: int
    rows_counted: bool
    rows_sampled: int

    @property
    def bound(self) -> float:
        """:func:`violation_bound` of the rows sampled."""
        return violation_bound(self.rows_sampled)

    def evidence(self) -> dict[str, Any]:
        """The note as results and the report carry it (``details["sampling"]``)."""
        return {"sampled": True, "table": self.table, "method": self.method,
                "percent": self.percent, "rows_in_table": self.rows_in_table,
                "rows_in_table_exact": self.rows_counted, "rows_sampled": self.rows_sampled,
                "confidence": SAMPLE_CONFIDENCE, "violating_fraction_below": self.bound,
                "formula": "1 - (1 - 0.99) ** (1 / rows_sampled), with 0 violations sampled"}

    def sentence(self, what: str) -> str:
        """'SAMPLED: ...' the words a PASS message states about ``what`` (e.g. 'token cells')."""
        about = "about " if not self.rows_counted else ""
        return (f"SAMPLED, not every row: {self.rows_sampled} of {about}{self.rows_in_table} rows "
                f"of {self.table} ({self.method}); with no violation among them, with 99% "
                f"confidence fewer than {percent_text(self.bound)} of the {what} violate "
                f"(1 - 0.01^(1/{self.rows_sampled})).")


def percent_text(fraction: float) -> str:
    """A fraction as a percentage with two significant digits (0.00046 → '0.046%')."""
    return f"{fraction * 100:.2g}%" if fraction < 1 else "100%"
