"""Where things are in a report directory, and reading them back.

Every reader of a finished run (the HTML report, the exports, the diff, the
bundle) goes through these names, so the layout is written down once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from harness.results import RunResults

RESULTS_JSON = "results.json"
JUNIT_XML = "junit.xml"
LEAKS_TXT = "LEAKS.txt"
EVIDENCE_DIR = "evidence"
CALIBRATION_JSON = "calibration.json"
REPORT_HTML = "report.html"
SARIF_FILE = "results.sarif"
OSCAL_FILE = "oscal-assessment-results.json"

# Evidence files larger than this are not parsed for the report; they are
# named with their size and stay in the bundle for whoever needs them.
MAX_EVIDENCE_BYTES = 4 << 20


class ReportDirError(Exception):
    """The directory is not a readable report directory (one line, safe to print)."""


def load_results(report_dir: Path) -> RunResults:
    """The run's ``results.json``, validated against the models.

    Raises:
        ReportDirError: the directory or file is missing, or the file is not results.json.
    """
    path = report_dir / RESULTS_JSON
    if not report_dir.is_dir():
        raise ReportDirError(f"{report_dir}: not a directory")
    if not path.is_file():
        raise ReportDirError(f"{report_dir}: holds no {RESULTS_JSON} (not a report directory?)")
    try:
        return RunResults.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ReportDirError(f"{path}: not a valid {RESULTS_JSON} ({where}: {first['msg']}; "
                             f"{exc.error_count()} error(s))") from None


@dataclass(frozen=True)
class EvidenceFile:
    """One evidence file as the report shows it.

    Attributes:
        path: relative to the report directory (as listed in results.json).
        name: the file name without its directory.
        size: bytes on disk (None if the file is missing).
        kind: ``json`` (parsed into ``data``), ``text`` (in ``text``),
            ``missing``, ``too-large`` or ``unreadable`` (``problem`` says why).
        data: the parsed JSON for ``json`` files.
        text: the content of text files (and of JSON that did not parse).
        problem: why the file could not be shown as data.
    """

    path: str
    name: str
    size: int | None
    kind: str
    data: Any = None
    text: str = ""
    problem: str = ""


def read_evidence(report_dir: Path, relative: str) -> EvidenceFile:
    """Read one evidence file defensively: a missing, huge or broken file is described, never raised."""
    name = relative.rsplit("/", 1)[-1]
    path = (report_dir / relative)
    try:
        resolved = path.resolve()
        if not resolved.is_relative_to(report_dir.resolve()):
            return EvidenceFile(relative, name, None, "unreadable", problem="outside the report directory")
        if not path.is_file():
            return EvidenceFile(relative, name, None, "missing", problem="the file is missing")
        size = path.stat().st_size
        if size > MAX_EVIDENCE_BYTES:
            return EvidenceFile(relative, name, size, "too-large",
                                problem=f"{size} bytes: too large to show here; it is in the bundle")
        raw = path.read_bytes()
    except OSError as exc:
        return EvidenceFile(relative, name, None, "unreadable", problem=exc.strerror or str(exc))
    text = raw.decode("utf-8", errors="replace")
    if name.endswith(".json"):
        try:
            return EvidenceFile(relative, name, size, "json", data=json.loads(text))
        except json.JSONDecodeError as exc:
            return EvidenceFile(relative, name, size, "text", text=text,
                                problem=f"not valid JSON (line {exc.lineno}): shown as text")
    return EvidenceFile(relative, name, size, "text", text=text)
