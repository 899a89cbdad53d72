"""The restore drills the audit itself ran, told apart from the operator's.

``at_rest.restore_drill`` judges the operator's drill history (is there a drill
in the last month?) and then runs a drill of its own, which the drill command
records in the same log. Counted on the next run, that entry would make the
audit its own witness: a gate that failed for want of a drill would pass when
simply run again. So an entry the audit caused is left out of the history, known
in either of two ways:

- **by its marker**: every operator command the harness runs gets
  ``VOTRIZ_AUDIT_RUN=votriz-audit/<id>`` in its environment; a drill that records
  the requester (the reference's writes ``requested_by``) marks its entry, which any
  machine can then tell apart;
- **by this machine's ledger**: the SHA-256 of each entry the audit's drill wrote,
  kept per drill log in ``$VOTRIZ_AUDIT_STATE_DIR/own-drills.jsonl`` (default
  ``$XDG_STATE_HOME/votriz-audit``, else ``~/.local/state/votriz-audit``); a pipeline
  keeps that directory between runs to keep the ledger.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.commands import MARKER_PREFIX, RUN_MARKER
from harness.safe_files import FileRefused, read_bytes

#: The ledger's file name in the state directory.
LEDGER_FILE = "own-drills.jsonl"
#: Largest ledger read (one ~200-byte line per audit drill: years of hourly audits fit).
LEDGER_CAP = 16 << 20


def state_dir() -> Path:
    """Where the harness keeps what it must remember between runs on this machine."""
    chosen = os.environ.get("VOTRIZ_AUDIT_STATE_DIR")
    if chosen:
        return Path(chosen)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "votriz-audit"


def entry_digest(entry: Mapping[str, Any]) -> str:
    """The SHA-256 of a drill log entry, canonical (sorted keys, no spaces)."""
    return hashlib.sha256(json.dumps(entry, sort_keys=True, separators=(",", ":"),
                                     default=str).encode()).hexdigest()


def marked(entry: Mapping[str, Any]) -> bool:
    """Whether the entry carries an audit's marker in one of its top-level text values."""
    return any(isinstance(value, str) and value.startswith(MARKER_PREFIX) for value in entry.values())


@dataclass(frozen=True)
class OwnDrills:
    """The audit's earlier drills of one drill log, as this machine remembers them.

    Attributes:
        ledger: the ledger file read.
        digests: the SHA-256 of every entry an audit's drill wrote to the log.
        problem: why the ledger could not be read (the marker still tells entries apart).
    """

    ledger: Path
    digests: frozenset[str]
    problem: str = ""

    def split(self, entries: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
        """The operator's entries, and how many were the audit's own (marked or in the ledger)."""
        operators = [e for e in entries if not marked(e) and entry_digest(e) not in self.digests]
        return operators, len(entries) - len(operators)


def _log_key(drill_log: Path) -> str:
    return os.path.abspath(drill_log)


def read_own_drills(drill_log: Path, ledger_dir: Path | None = None) -> OwnDrills:
    """What the ledger holds for ``drill_log``; never raises (a problem is recorded)."""
    ledger = (ledger_dir or state_dir()) / LEDGER_FILE
    try:
        os.lstat(ledger)
    except FileNotFoundError:
        # No audit's drill was recorded here (a state directory that cannot hold one is a problem).
        return OwnDrills(ledger, frozenset())
    except OSError as exc:
        return OwnDrills(ledger, frozenset(), f"{ledger} could not be read: {exc.strerror or exc}")
    try:
        text = read_bytes(ledger, "ledger of the audit's drills", LEDGER_CAP).decode("utf-8", "replace")
    except FileRefused as exc:
        return OwnDrills(ledger, frozenset(), f"{ledger} could not be read: {exc.reason}")
    key, digests = _log_key(drill_log), set()
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(row, dict) and row.get("log") == key and isinstance(row.get("sha256"), str):
            digests.add(row["sha256"])
    return OwnDrills(ledger, frozenset(digests))


def remember_own_drill(drill_log: Path, entry: Mapping[str, Any], ledger_dir: Path | None = None) -> str:
    """Add the entry the audit's drill just wrote to the ledger; ``""``, or why it could not be.

    Appended with O_NOFOLLOW: a link planted in place of the ledger is refused, not followed."""
    directory = ledger_dir or state_dir()
    row = json.dumps({"log": _log_key(drill_log), "sha256": entry_digest(entry),
                      "marker": RUN_MARKER}, sort_keys=True) + "\n"
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(directory / LEDGER_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as ledger:
            ledger.write(row)
    except OSError as exc:
        return f"{directory / LEDGER_FILE} could not be written: {exc.strerror or exc}"
    return ""
