"""The model of ``REPORT/calibration.json``: does each check catch the fault made for it?

A calibration run starts the reference service once per fault (``votriz-audit
faults`` lists them) and once per violation (a clean service broken while it
runs: a row edited, a file planted, an HSM object created, a configuration
reloaded), and records, for every check expected to catch it, the outcome it
observed. The HTML report renders the file, when a
report directory holds one, as the "Detection matrix". The file's JSON schema
is :func:`calibration_schema`, generated from these models.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from harness import __version__
from harness.outcomes import Outcome

CALIBRATION_SCHEMA_VERSION = 1
# What a row calibrates: the service with nothing broken, a start-up fault switch,
# or a violation applied to the running service.
RowKind = Literal["clean", "fault", "violation"]


class CalibrationError(Exception):
    """calibration.json exists but is not valid (one line, safe to print)."""


class DetectionRow(BaseModel):
    """One fault or violation and one check expected to catch it.

    Attributes:
        fault: name of the reference service's fault switch or violation (``"clean"``
            for the run without either, where every check is expected to PASS).
        kind: ``fault`` (a start-up switch), ``violation`` (applied to the running
            service after ``up``) or ``clean``; a file written before violations
            existed reads as ``fault`` (``clean`` for its clean rows).
        description: what the fault breaks, in the page's words.
        claims: the claims the fault breaks.
        expected_check: the check that must catch it.
        expected_outcome: what that check must conclude (FAIL for a fault,
            PASS for the clean run).
        observed_outcome: what it concluded; None if it did not run.
        run_id: the run that observed it (its report directory's results.json).
        other_failures: checks that also FAILED in that run (a fault should break one
            promise; anything here is either a second promise it breaks or an over-eager check).
    """

    model_config = ConfigDict(frozen=True)

    fault: str
    kind: RowKind = "fault"
    description: str = ""
    claims: tuple[str, ...] = ()
    expected_check: str
    expected_outcome: Outcome = Outcome.FAIL
    observed_outcome: Outcome | None = None
    run_id: str | None = None
    other_failures: tuple[str, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _clean_rows_of_older_files(cls, data: Any) -> Any:
        if isinstance(data, dict) and "kind" not in data and data.get("fault") == "clean":
            return {**data, "kind": "clean"}
        return data

    @property
    def detected(self) -> bool:
        """True when the check concluded what it was expected to."""
        return self.observed_outcome is self.expected_outcome


class Calibration(BaseModel):
    """Everything one calibration concluded (calibration.json).

    Attributes:
        schema_version: version of this format.
        tool_version: the harness that wrote it.
        created_at: when it was written (UTC).
        rows: one per (fault, expected check), in the order to show them.
    """

    model_config = ConfigDict(frozen=True)

    schema_version: int = CALIBRATION_SCHEMA_VERSION
    tool_version: str = __version__
    created_at: dt.datetime
    rows: tuple[DetectionRow, ...]

    @property
    def missed(self) -> tuple[DetectionRow, ...]:
        """The rows whose check did not conclude what it should have."""
        return tuple(row for row in self.rows if not row.detected)

    def of_kind(self, kind: RowKind) -> tuple[DetectionRow, ...]:
        """The rows of one kind (``fault``, ``violation`` or ``clean``), in order."""
        return tuple(row for row in self.rows if row.kind == kind)

    @property
    def unexpected_failures(self) -> tuple[DetectionRow, ...]:
        """One row per run in which a check FAILED that nobody expected to fail there.

        On the clean run, or for a violation meant to break one promise, that is a false
        positive or a second promise broken; the row's ``other_failures`` names the checks.
        """
        seen: set[tuple[str, str]] = set()
        found: list[DetectionRow] = []
        for row in self.rows:
            if row.other_failures and (row.kind, row.fault) not in seen:
                seen.add((row.kind, row.fault))
                found.append(row)
        return tuple(found)


def load_calibration(path: Path) -> Calibration | None:
    """The calibration at ``path``, or None when there is no such file.

    Raises:
        CalibrationError: the file exists but is not a valid calibration.json.
    """
    if not path.is_file():
        return None
    try:
        return Calibration.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise CalibrationError(f"{path}: not a valid calibration.json ({where}: {first['msg']})") from None


def calibration_schema() -> dict[str, Any]:
    """The JSON schema of calibration.json, generated from the models."""
    schema = Calibration.model_json_schema()
    schema["$id"] = f"https://votriz-audit/schemas/calibration-v{CALIBRATION_SCHEMA_VERSION}.json"
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
