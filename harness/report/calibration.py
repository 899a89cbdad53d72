"""The model of ``REPORT/calibration.json``: does each check catch the fault made for it?

A calibration run starts the reference service once per fault (``votriz-audit
faults`` lists them) and records, for every check expected to catch that
fault, the outcome it observed. The HTML report renders the file, when a
report directory holds one, as the "Detection matrix". The file's JSON schema
is :func:`calibration_schema`, generated from these models.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from harness import __version__
from harness.outcomes import Outcome

CALIBRATION_SCHEMA_VERSION = 1


class CalibrationError(Exception):
    """calibration.json exists but is not valid (one line, safe to print)."""


class DetectionRow(BaseModel):
    """One fault and one check expected to catch it.

    Attributes:
        fault: name of the reference service's fault switch (``"clean"`` for
            the run without faults, where every check is expected to PASS).
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
    description: str = ""
    claims: tuple[str, ...] = ()
    expected_check: str
    expected_outcome: Outcome = Outcome.FAIL
    observed_outcome: Outcome | None = None
    run_id: str | None = None
    other_failures: tuple[str, ...] = ()

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
