"""Backups, their retention and the restore drill, as the profile's operations expose them.

The probe runs the profile's operator commands (argv lists, no shell) with a
timeout, keeping only redacted output, and reads the drill log. It makes the
observations the at-rest backup checks judge: the store as found
(``backup_store.py``, recorded before anything below acts on it), a fresh
backup, pruning of planted copies of known ages (run only when the prune can
delete nothing the audit did not plant), and a restore drill held to row counts.
Nothing here judges: ``checks/at_rest/backup_*.py`` and ``restore_drill.py`` do.
"""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from harness.commands import run_operation
from harness.operations import command_timeout
from harness.outcomes import ProbeError
from harness.policy import Policy
from harness.probes.backup_store import (
    NAME_TIMESTAMP,
    BackupInspection,
    StoreObservation,
    entries_older_than,
    inspect_backup,
    list_store,
    observe_store,
    walk_store,
)
from harness.probes.database import open_database
from harness.probes.own_drills import read_own_drills, remember_own_drill
from harness.profile import TargetProfile
from harness.redaction import KnownSecrets
from harness.safe_files import FileRefused, read_bytes
from harness.sweep import SecretSweep


@dataclass(frozen=True)
class CommandRun:
    """One operator command, run to completion (or killed at its timeout).

    Attributes:
        name: the profile's name for it (``backup``, ``prune_backups`` ...).
        exit_code: its exit status; None when it timed out or could not start.
        seconds: how long it ran.
        stdout: its output, redacted and cut to 4000 characters.
        stderr: its error output, redacted and cut to 4000 characters.
        error: why it did not run to completion, if it did not.
    """

    name: str
    exit_code: int | None
    seconds: float
    stdout: str
    stderr: str
    error: str = ""

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0

    def describe(self) -> str:
        if self.error:
            return f"{self.name}: {self.error}"
        last = (self.stderr.strip().splitlines() or self.stdout.strip().splitlines() or [""])[-1]
        return f"{self.name} exited {self.exit_code}" + (f": {last[:300]}" if last else "")


def run_command(name: str, argv: Sequence[str], timeout_s: float,
                known_secrets: KnownSecrets) -> CommandRun:
    """Run ``argv`` with the harness's one command runner (no shell, bounded, redacted);
    never raises for the command's own failure."""
    try:
        done = run_operation(argv, timeout_s, known_secrets=known_secrets)
    except ProbeError as exc:
        return CommandRun(name, None, 0.0, "", "", str(exc))
    if done.timed_out:
        return CommandRun(name, None, round(done.duration_s, 2), "", "",
                          f"did not finish within {timeout_s:g} s (killed)")
    return CommandRun(name, done.returncode, round(done.duration_s, 2),
                      "\n".join(line for _, line in done.lines)[-4000:],
                      "\n".join(done.stderr_tail)[-4000:])


@dataclass(frozen=True)
class BackupFile:
    """One file in the backup directory.

    Attributes:
        name: its path below the store (its file name at the top level).
        size: its size in bytes.
        mtime: its modification time (epoch seconds).
    """

    name: str
    size: int
    mtime: float


def list_backups(directory: Path) -> tuple[tuple[BackupFile, ...], bool]:
    """Regular files under ``directory`` at any depth (symlinks not followed), named by their
    path below it, oldest first by modification time; and whether the listing was cut at
    :data:`~harness.probes.backup_store.MAX_ENTRIES` entries or its depth bound."""
    if not directory.is_dir():
        return (), False
    listed, truncated = walk_store(directory)
    found = [BackupFile(relative, info.st_size, info.st_mtime) for relative, _, info in listed
             if stat.S_ISREG(info.st_mode)]
    return tuple(sorted(found, key=lambda f: (f.mtime, f.name))), truncated


def aged_backup_name(name: str, age_days: float, now: float) -> str:
    """The name a backup like ``name`` would have if taken ``age_days`` ago.

    A ``YYYYmmddTHHMMSSZ`` stamp in the name is replaced; otherwise the age is
    prefixed, and only the file's modification time will say how old it is.
    """
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now - age_days * 86400))
    if NAME_TIMESTAMP.search(name):
        return NAME_TIMESTAMP.sub(stamp, name, count=1)
    return f"aged-{stamp}-{name}"


def plant_aged_copy(source: Path, age_days: float, now: float | None = None) -> Path:
    """Copy ``source`` under an aged name, with an aged modification time too."""
    now = time.time() if now is None else now
    target = source.with_name(aged_backup_name(source.name, age_days, now))
    with source.open("rb") as reader, target.open("xb") as writer:
        while chunk := reader.read(1 << 20):
            writer.write(chunk)
    stamp = now - age_days * 86400
    os.utime(target, (stamp, stamp))
    return target


DRILL_LOG_CAP = 16 << 20
"""Largest drill log read, in bytes (one JSON line per drill; years of monthly drills fit)."""


@dataclass(frozen=True)
class DrillLog:
    """The drill log as found.

    Attributes:
        entries: its entries, one JSON object per line (other lines are skipped).
        absent: True when there is no file at the path (no drill is recorded).
    """

    entries: tuple[dict[str, Any], ...]
    absent: bool = False


def read_drill_log(path: Path) -> DrillLog:
    """The drill log's entries, read as a regular, size-capped file without blocking.

    A missing log records no drill; it is not an error.

    Raises:
        FileRefused: the path is a FIFO, directory, device or socket, larger than
            :data:`DRILL_LOG_CAP`, or unreadable.
    """
    if not path.exists() and not path.is_symlink():
        return DrillLog((), absent=True)
    text = read_bytes(path, "drill log", DRILL_LOG_CAP).decode("utf-8", errors="replace")
    entries = []
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return DrillLog(tuple(entries))


# --- what the at-rest checks observe through the operations ----------------------------------


def run_profile_operation(profile: TargetProfile, policy: Policy, known: KnownSecrets,
                          name: str) -> CommandRun:
    """Run the profile's operation ``name`` (``operations.<name>``) within the command timeout."""
    argv = getattr(profile.operations, name)
    assert argv is not None
    return run_command(name, argv, command_timeout(profile, policy), known)


@dataclass(frozen=True)
class BackupObservation:
    """The store as found, a backup the harness made, and what the new file's bytes show.

    Attributes:
        run: the backup command.
        inspection: the backup's markers, entropy and secret hits (the largest new file, a
            checksum or manifest beside it being smaller); None if no new file.
        store: the backup store as found before the audit made anything in it.
        others: every other file the backup left, at any depth of the store (a checksum, a
            manifest, or a staging dump beside the encrypted file), inspected the same way.
        listing_cut: the store holds more entries (or levels) than the harness lists, so a
            file the backup left may not have been seen.
    """

    run: CommandRun
    inspection: BackupInspection | None
    store: StoreObservation
    others: tuple[BackupInspection, ...] = ()
    listing_cut: bool = False


def _take_backup(profile: TargetProfile, policy: Policy, known: KnownSecrets,
                 directory: Path) -> tuple[CommandRun, list[BackupFile], bool]:
    """Run the backup command: the run, every file it left new or rewritten at any depth of the
    store, and whether the store's listing was cut at its bound (a new file may be unseen)."""
    listed, cut_before = list_backups(directory)
    before = {(f.name, f.mtime, f.size) for f in listed}
    run = run_profile_operation(profile, policy, known, "backup")
    if not run.succeeded:
        return run, [], cut_before
    listed, cut_after = list_backups(directory)
    return run, [f for f in listed if (f.name, f.mtime, f.size) not in before], cut_before or cut_after


def _the_backup(new: Sequence[BackupFile]) -> BackupFile:
    """Of the files a backup left, the backup: the largest (a checksum or manifest is smaller)."""
    return max(new, key=lambda f: (f.size, f.mtime, f.name))


def observe_backup(profile: TargetProfile, policy: Policy, known: KnownSecrets,
                   as_found: StoreObservation | None = None) -> BackupObservation:
    """Record the store (unless ``as_found`` was recorded earlier in the run), run the backup
    command and inspect every new file it leaves in the backup directory.

    Raises:
        OSError: a new file could not be read (the caller words it).
    """
    directory = profile.operations.backup_dir
    assert directory is not None
    store = as_found if as_found is not None else observe_store(directory, known)
    run, new, cut = _take_backup(profile, policy, known, directory)
    if not run.succeeded:
        return BackupObservation(run, None, store)
    if not new:
        return BackupObservation(run, None, store, listing_cut=cut)
    backup = _the_backup(new)
    sweep = SecretSweep.from_known(known)
    others = tuple(inspect_backup(directory / f.name, sweep, name=f.name)
                   for f in sorted(new, key=lambda f: f.name) if f is not backup)
    return BackupObservation(run, inspect_backup(directory / backup.name, sweep, name=backup.name),
                             store, others, cut)


@dataclass(frozen=True)
class PruneTrial:
    """What the profile's prune did to planted backups of known ages.

    Attributes:
        prune: the prune command.
        old_name: a copy of a fresh backup planted as older than the retention.
        old_removed: whether pruning removed it.
        young_name: a copy planted as younger than the retention.
        young_kept: whether pruning kept it.
        newest_name: the fresh backup the audit took to plant copies of (its path in the store).
        newest_kept: whether pruning kept it.
        others_deleted: entries the audit did not plant that were there before the
            prune and gone after it.
    """

    prune: CommandRun
    old_name: str
    old_removed: bool
    young_name: str
    young_kept: bool
    newest_name: str
    newest_kept: bool
    others_deleted: tuple[str, ...] = ()


@dataclass(frozen=True)
class RetentionObservation:
    """The store as found, judged for ages first; then the prune, if it was safe to run.

    Attributes:
        store: the backup store as found before the audit acted on it.
        retention_days: the policy's retention.
        trial: what the prune did to planted copies; None when it was not run.
        not_run: why the prune was not run (``""`` when it was).
        prunable: entries the audit did not plant that were older than the
            retention just before the prune would have run (a prune is entitled
            to delete them, so it was not run).
    """

    store: StoreObservation
    retention_days: int
    trial: PruneTrial | None
    not_run: str = ""
    prunable: tuple[str, ...] = ()


def observe_retention(profile: TargetProfile, policy: Policy, known: KnownSecrets,
                      as_found: StoreObservation | None = None) -> RetentionObservation:
    """Record the store (unless ``as_found`` was recorded earlier in the run); then, only when
    nothing the audit did not plant is older than the retention, take a backup with the
    operator's command, plant aged copies of it beside it, run the prune command and see what
    it kept.

    The prune is never run where it could delete a file the audit did not create:
    that file is either a violation to report or the operator's to remove.
    """
    directory = profile.operations.backup_dir
    assert directory is not None
    days = policy.backups.retention_days
    store = as_found if as_found is not None else observe_store(directory, known)
    if store.error:
        return RetentionObservation(store, days, None, f"the store could not be read: "
                                    f"{store.error}")
    aged = entries_older_than(store, days, store.observed_at)
    if aged:
        return RetentionObservation(store, days, None, "the store as found holds entries older "
                                    f"than {days} days; the prune was not run, so that they stay "
                                    "as evidence", aged)
    # Copies of a fresh backup, planted beside it: the backup is what the operator's command
    # writes (not a log, a checksum or a staging file that happens to be newer), wherever it goes.
    made, new, _ = _take_backup(profile, policy, known, directory)
    if not made.succeeded:
        raise ProbeError(f"no fresh backup to plant aged copies of: {made.describe()}")
    if not new:
        raise ProbeError(f"the backup command left no new file in {directory} to plant aged copies of")
    newest = _the_backup(new)
    now = time.time()
    # Look again just before the prune: the store may have changed since it was recorded.
    current = list_store(directory, now)
    if current.truncated:
        return RetentionObservation(store, days, None, "the store holds more entries than the "
                                    "harness lists, so it cannot show the prune would delete "
                                    "only what the audit planted")
    prunable = entries_older_than(current, days, now)
    if prunable:
        return RetentionObservation(store, days, None, "the prune would be entitled to delete "
                                    "entries the audit did not create, so it was not run",
                                    prunable)
    source = directory / newest.name
    before = {e.path for e in current.entries}
    planted: list[Path] = []
    try:
        old = plant_aged_copy(source, days + 10, now)
        planted.append(old)
        young = plant_aged_copy(source, max(days - 5, 1), now)
        planted.append(young)
        prune = run_profile_operation(profile, policy, known, "prune_backups")
        after = {e.path for e in list_store(directory, time.time()).entries}
        trial = PruneTrial(prune, old.name, not old.exists(), young.name, young.exists(),
                           newest.name, source.exists(), tuple(sorted(before - after - {newest.name})))
        return RetentionObservation(store, days, trial)
    finally:
        # The planted copies are the harness's; none may outlive the check.
        for copy in planted:
            copy.unlink(missing_ok=True)


@dataclass(frozen=True)
class DrillObservation:
    """A drill run by the harness, with row counts it can hold the drill's report to.

    The harness counts rows, takes a backup, then changes the database through
    the canary, then runs the drill. A drill that restored the backup reports
    the counts taken before the backup; one that reports the live database's
    counts (nothing restored) shows the canary's change.

    Attributes:
        backup: the backup command run just before the drill.
        drill: the drill command.
        counts_at_backup: rows per table just before the backup.
        counts_at_drill: rows per table just before the drill (after the change).
        changed_tables: tables whose counts the canary's change moved.
        entry: the drill log's new last entry; None if the drill wrote none.
        restored: rows per table the entry reports as restored.
        previous_drill_age_days: age of the newest successful drill (``ok: true``) the
            log held before this one, if any.
        earlier_entries: how many of the operator's entries the log held before this one.
        log_absent: True when there was no drill log before this audit's drill.
        own_earlier: entries of earlier audits' own drills, left out of the history
            (``harness/probes/own_drills.py``).
        ledger_unread: why this machine's ledger of the audit's drills could not be read
            (earlier audits' drills unmarked in the log cannot be told apart), else ``""``.
        ledger_unwritten: why this audit's drill could not be added to it, else ``""``.
    """

    backup: CommandRun
    drill: CommandRun | None
    counts_at_backup: dict[str, int]
    counts_at_drill: dict[str, int]
    changed_tables: tuple[str, ...]
    entry: dict[str, Any] | None
    restored: dict[str, int]
    previous_drill_age_days: float | None
    earlier_entries: int = 0
    log_absent: bool = False
    own_earlier: int = 0
    ledger_unread: str = ""
    ledger_unwritten: str = ""


def restored_counts(entry: dict[str, Any]) -> dict[str, int]:
    """Rows per table a drill log entry says it restored (``tables: {t: {restored: n}}``)."""
    tables = entry.get("tables")
    found: dict[str, int] = {}
    if isinstance(tables, dict):
        for name, value in tables.items():
            count = value.get("restored") if isinstance(value, dict) else value
            if isinstance(count, int) and not isinstance(count, bool):
                found[str(name).removeprefix("public.")] = count
    return found


def _table_counts(profile: TargetProfile, policy: Policy, known: KnownSecrets) -> dict[str, int]:
    with open_database(profile, policy, known) as db:
        counts = db.visible_tables().row_counts
    return {name.removeprefix("public."): n for name, n in counts.items()}


def _entry_age_days(entry: dict[str, Any], now: float) -> float | None:
    stamp = entry.get("time")
    if not isinstance(stamp, str):
        return None
    try:
        return (now - datetime.fromisoformat(stamp).timestamp()) / 86400
    except ValueError:
        return None


# A drill dated later than this (clock skew) is no record of a drill that happened.
_FUTURE_TOLERANCE_DAYS = 1 / 24


def _read_log(path: Path) -> DrillLog:
    try:
        return read_drill_log(path)
    except FileRefused as exc:
        raise ProbeError(f"the drill log {path} could not be read: {exc.reason}") from None


def observe_drill(profile: TargetProfile, policy: Policy, known: KnownSecrets,
                  change: Callable[[], None] | None) -> DrillObservation:
    """Read the drill log as found, then count rows, back up, change the database
    (``change``), run the drill and read the log's new entry.

    Raises:
        ProbeError: the drill log is a FIFO, directory, device or socket, too large, or
            unreadable (nothing is run then).
    """
    log_path = profile.operations.drill_log
    assert log_path is not None
    now = time.time()
    earlier = _read_log(log_path)
    own = read_own_drills(log_path)
    # The audit's own earlier drills are no record of the operator's: left out.
    operators, own_earlier = own.split(earlier.entries)
    ages = [a for a in (_entry_age_days(e, now) for e in operators if e.get("ok") is True)
            if a is not None and a >= -_FUTURE_TOLERANCE_DAYS]
    previous_age = max(min(ages), 0.0) if ages else None
    history: dict[str, Any] = {"previous_drill_age_days": previous_age, "earlier_entries": len(operators),
               "log_absent": earlier.absent, "own_earlier": own_earlier, "ledger_unread": own.problem}
    at_backup = _table_counts(profile, policy, known)
    backup = run_profile_operation(profile, policy, known, "backup")
    if not backup.succeeded:
        return DrillObservation(backup, None, at_backup, {}, (), None, {}, **history)
    if change is not None:
        change()
    at_drill = _table_counts(profile, policy, known)
    changed = tuple(sorted(t for t in at_drill if at_drill.get(t) != at_backup.get(t)))
    drill = run_profile_operation(profile, policy, known, "restore_drill")
    entries = _read_log(log_path).entries
    entry = entries[-1] if len(entries) > len(earlier.entries) else None
    restored = restored_counts(entry) if entry is not None else {}
    if entry is not None:
        history["ledger_unwritten"] = remember_own_drill(log_path, entry)
    return DrillObservation(backup, drill, at_backup, at_drill, changed, entry, restored, **history)
