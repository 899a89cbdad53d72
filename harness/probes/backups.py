"""Backups, their retention and the restore drill, as the profile's operations expose them.

The probe runs the profile's operator commands (argv lists, no shell) with a
timeout, keeping only redacted output; it inspects backup files (markers of
an unencrypted dump, compression magic numbers, byte entropy, known secrets) and reads the drill log.
It also makes the observations the at-rest backup checks judge: a fresh backup,
pruning of planted copies of known ages, and a restore drill held to row counts.
Nothing here judges: ``checks/at_rest/backup_*.py`` and ``restore_drill.py`` do.
"""

from __future__ import annotations

import base64
import binascii
import bz2
import io
import json
import lzma
import math
import os
import re
import subprocess
import time
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from harness.operations import command_timeout
from harness.outcomes import ProbeError
from harness.policy import Policy
from harness.probes.database import open_database
from harness.profile import TargetProfile
from harness.redaction import KnownSecrets
from harness.sweep import SecretSweep, SweepHit

#: Byte strings that only an unencrypted PostgreSQL dump contains.
DUMP_MARKERS: dict[str, bytes] = {
    "pg_dump custom-format header (PGDMP)": b"PGDMP",
    "pg_dump plain-SQL header": b"-- PostgreSQL database dump",
    "pg_dump tar-format table of contents": b"toc.dat",
    "SQL COPY statement": b"COPY public.",
    "SQL CREATE TABLE statement": b"CREATE TABLE public.",
}
#: Leading bytes (magic numbers) of compressed files. Compression is not
#: encryption: ``pg_dump | gzip`` has no dump marker and high entropy, yet
#: anyone can read it back.
COMPRESSION_MAGIC: dict[str, bytes] = {
    "gzip": b"\x1f\x8b",
    "zstd": b"\x28\xb5\x2f\xfd",
    "xz": b"\xfd7zXZ\x00",
    "bzip2": b"BZh",
    "zip": b"PK\x03\x04",
}
SAMPLE_BYTES = 4 * 1024 * 1024
#: How many decompressed bytes are looked at to confirm what a compressed file holds.
DECOMPRESSED_PREFIX = 1024 * 1024
_TIMESTAMP = re.compile(r"\d{8}T\d{6}Z")
_BASE64_LINE = re.compile(rb"^[A-Za-z0-9+/_=-]*$")


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
    """Run ``argv`` without a shell; never raises for the command's own failure."""
    started = time.monotonic()
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, errors="replace",
                              stdin=subprocess.DEVNULL, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return CommandRun(name, None, round(time.monotonic() - started, 2), "", "",
                          f"did not finish within {timeout_s:g} s (killed)")
    except OSError as exc:
        return CommandRun(name, None, 0.0, "", "", f"cannot start {argv[0]}: {exc.strerror}")
    return CommandRun(name, done.returncode, round(time.monotonic() - started, 2),
                      known_secrets.redact(done.stdout)[-4000:],
                      known_secrets.redact(done.stderr)[-4000:])


@dataclass(frozen=True)
class BackupFile:
    """One file in the backup directory.

    Attributes:
        name: its file name.
        size: its size in bytes.
        mtime: its modification time (epoch seconds).
    """

    name: str
    size: int
    mtime: float


def list_backups(directory: Path) -> tuple[BackupFile, ...]:
    """Regular files in ``directory``, oldest first by modification time."""
    if not directory.is_dir():
        return ()
    found = []
    for path in directory.iterdir():
        if path.is_file() and not path.is_symlink():
            stat = path.stat()
            found.append(BackupFile(path.name, stat.st_size, stat.st_mtime))
    return tuple(sorted(found, key=lambda f: (f.mtime, f.name)))


def shannon_entropy(data: bytes) -> float:
    """Bits of entropy per byte of ``data`` (0.0 for empty data; 8.0 is the maximum)."""
    if not data:
        return 0.0
    total = len(data)
    return -sum(n / total * math.log2(n / total) for n in Counter(data).values())


def _decode_base64_lines(data: bytes) -> bytes | None:
    """The decoded bytes when ``data`` is lines of base64 (either alphabet), else None."""
    lines = [line.strip() for line in data.splitlines() if line.strip()]
    # The sample may cut the last line; judge the whole lines.
    if len(lines) > 1:
        lines = lines[:-1]
    if not lines or not all(_BASE64_LINE.match(line) for line in lines):
        return None
    decoded = bytearray()
    for line in lines:
        try:
            decoded += base64.b64decode(line.replace(b"-", b"+").replace(b"_", b"/")
                                        + b"=" * (-len(line) % 4))
        except (binascii.Error, ValueError):
            return None
    return bytes(decoded)


def compression_of(sample: bytes) -> str:
    """The compression format whose magic number ``sample`` starts with, or ``""``."""
    return next((name for name, magic in COMPRESSION_MAGIC.items() if sample.startswith(magic)),
                "")


def _zip_first_member(sample: bytes, limit: int) -> bytes:
    """The first member of a zip archive, from a prefix that may lack the central directory."""
    try:
        with zipfile.ZipFile(io.BytesIO(sample)) as archive:
            names = archive.namelist()
            if names:
                with archive.open(names[0]) as member:
                    return member.read(limit)
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError):
        pass
    # A prefix has no central directory: read the first local header by hand.
    if len(sample) < 30:
        raise ValueError("truncated zip local header")
    method = int.from_bytes(sample[8:10], "little")
    start = 30 + int.from_bytes(sample[26:28], "little") + int.from_bytes(sample[28:30], "little")
    if method == 0:
        return sample[start:start + limit]
    if method == 8:
        return zlib.decompressobj(-15).decompress(sample[start:], limit)
    raise ValueError(f"zip compression method {method} is not readable here")


def decompress_prefix(sample: bytes, compression: str,
                      limit: int = DECOMPRESSED_PREFIX) -> bytes | None:
    """Up to ``limit`` decompressed bytes of a compressed ``sample``; None when it cannot be
    decompressed here (no decoder for the format, or the bytes are not what the magic says)."""
    try:
        if compression == "gzip":
            return zlib.decompressobj(wbits=31).decompress(sample, limit)
        if compression == "bzip2":
            return bz2.BZ2Decompressor().decompress(sample, max_length=limit)
        if compression == "xz":
            return lzma.LZMADecompressor().decompress(sample, max_length=limit)
        if compression == "zip":
            return _zip_first_member(sample, limit)
    except (zlib.error, OSError, lzma.LZMAError, EOFError, ValueError):
        return None
    return None


@dataclass(frozen=True)
class BackupInspection:
    """What one backup file's bytes show.

    Attributes:
        name: the file's name.
        size: its size in bytes.
        sampled: how many bytes were sampled for markers and entropy.
        markers: names of unencrypted-dump markers found in the sample.
        encoding: ``binary`` or ``base64 lines`` (ciphertext is often stored as text).
        entropy_bits: bits per byte of the sample (of its decoded bytes for base64 lines).
        secret_hits: known secrets found anywhere in the file.
        compression: the compression format the file starts with (``gzip``,
            ``zstd``, ``xz``, ``bzip2``, ``zip``), or ``""``.
        decompressed: how many bytes of the compressed file's prefix could be
            decompressed here (0 when none could).
        decompressed_markers: unencrypted-dump markers in that decompressed prefix.
    """

    name: str
    size: int
    sampled: int
    markers: tuple[str, ...]
    encoding: str
    entropy_bits: float
    secret_hits: tuple[SweepHit, ...]
    compression: str = ""
    decompressed: int = 0
    decompressed_markers: tuple[str, ...] = ()


def dump_markers(data: bytes) -> tuple[str, ...]:
    """Names of the unencrypted-dump markers found in ``data``."""
    return tuple(name for name, marker in DUMP_MARKERS.items() if marker in data)


def inspect_backup(path: Path, sweep: SecretSweep, *,
                   sample_bytes: int = SAMPLE_BYTES) -> BackupInspection:
    """Markers, compression, entropy and known secrets of one backup file (raises OSError if
    unreadable)."""
    with path.open("rb") as stream:
        sample = stream.read(sample_bytes)
    markers = dump_markers(sample)
    compression = compression_of(sample)
    inner = decompress_prefix(sample, compression) if compression else None
    decoded = _decode_base64_lines(sample)
    encoding = "base64 lines" if decoded is not None else "binary"
    entropy = shannon_entropy(decoded if decoded is not None else sample)
    hits = tuple(sweep.scan_file(path, location=path.name))
    return BackupInspection(path.name, path.stat().st_size, len(sample), markers, encoding,
                            round(entropy, 3), hits, compression, len(inner or b""),
                            dump_markers(inner) if inner else ())


def aged_backup_name(name: str, age_days: float, now: float) -> str:
    """The name a backup like ``name`` would have if taken ``age_days`` ago.

    A ``YYYYmmddTHHMMSSZ`` stamp in the name is replaced; otherwise the age is
    prefixed, and only the file's modification time will say how old it is.
    """
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now - age_days * 86400))
    if _TIMESTAMP.search(name):
        return _TIMESTAMP.sub(stamp, name, count=1)
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


def read_drill_log(path: Path) -> list[dict[str, Any]]:
    """The drill log's entries (one JSON object per line; other lines are skipped)."""
    if not path.is_file():
        return []
    entries = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


# --- what the at-rest checks observe through the operations ----------------------------------


def run_profile_operation(profile: TargetProfile, policy: Policy, known: KnownSecrets,
                          name: str) -> CommandRun:
    """Run the profile's operation ``name`` (``operations.<name>``) within the command timeout."""
    argv = getattr(profile.operations, name)
    assert argv is not None
    return run_command(name, argv, command_timeout(profile, policy), known)


def _newest(files: Sequence[BackupFile]) -> BackupFile | None:
    return max(files, key=lambda f: (f.mtime, f.name)) if files else None


@dataclass(frozen=True)
class BackupObservation:
    """A backup the harness made and what its bytes show.

    Attributes:
        run: the backup command.
        inspection: the new file's markers, entropy and secret hits; None if no new file.
    """

    run: CommandRun
    inspection: BackupInspection | None


def observe_backup(profile: TargetProfile, policy: Policy,
                   known: KnownSecrets) -> BackupObservation:
    """Run the backup command and inspect the new file it leaves in the backup directory."""
    directory = profile.operations.backup_dir
    assert directory is not None
    before = {(f.name, f.mtime) for f in list_backups(directory)}
    run = run_profile_operation(profile, policy, known, "backup")
    if not run.succeeded:
        return BackupObservation(run, None)
    new = [f for f in list_backups(directory) if (f.name, f.mtime) not in before]
    newest = _newest(new)
    if newest is None:
        return BackupObservation(run, None)
    inspection = inspect_backup(directory / newest.name,
                                             SecretSweep.from_known(known))
    return BackupObservation(run, inspection)


@dataclass(frozen=True)
class RetentionObservation:
    """What pruning did to planted backups of known ages.

    Attributes:
        prune: the prune command.
        retention_days: the policy's retention.
        old_name: a copy of the newest backup planted as older than the retention.
        old_removed: whether pruning removed it.
        young_name: a copy planted as younger than the retention.
        young_kept: whether pruning kept it.
        newest_name: the newest real backup.
        newest_kept: whether pruning kept it.
    """

    prune: CommandRun
    retention_days: int
    old_name: str
    old_removed: bool
    young_name: str
    young_kept: bool
    newest_name: str
    newest_kept: bool


def observe_retention(profile: TargetProfile, policy: Policy,
                      known: KnownSecrets) -> RetentionObservation:
    """Plant aged copies of the newest backup, run the prune command, see what it kept."""
    directory = profile.operations.backup_dir
    assert directory is not None
    newest = _newest(list_backups(directory))
    if newest is None:
        made = run_profile_operation(profile, policy, known, "backup")
        if not made.succeeded:
            raise ProbeError(f"no backup to plant copies of, and {made.describe()}")
        newest = _newest(list_backups(directory))
        if newest is None:
            raise ProbeError(f"no backup in {directory} even after running the backup command")
    days = policy.backups.retention_days
    source = directory / newest.name
    old = plant_aged_copy(source, days + 10)
    young = plant_aged_copy(source, max(days - 5, 1))
    try:
        prune = run_profile_operation(profile, policy, known, "prune_backups")
        return RetentionObservation(prune, days, old.name, not old.exists(), young.name,
                                    young.exists(), newest.name, source.exists())
    finally:
        # The planted copies are the harness's; none may outlive the check.
        old.unlink(missing_ok=True)
        young.unlink(missing_ok=True)


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
        previous_drill_age_days: age of the newest drill before this one, if any.
    """

    backup: CommandRun
    drill: CommandRun | None
    counts_at_backup: dict[str, int]
    counts_at_drill: dict[str, int]
    changed_tables: tuple[str, ...]
    entry: dict[str, Any] | None
    restored: dict[str, int]
    previous_drill_age_days: float | None


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


def observe_drill(profile: TargetProfile, policy: Policy, known: KnownSecrets,
                  change: Callable[[], None] | None) -> DrillObservation:
    """Count rows, back up, change the database (``change``), run the drill, read its log."""
    log_path = profile.operations.drill_log
    assert log_path is not None
    now = time.time()
    earlier = read_drill_log(log_path)
    ages = [a for a in (_entry_age_days(e, now) for e in earlier) if a is not None]
    previous_age = min(ages) if ages else None
    at_backup = _table_counts(profile, policy, known)
    backup = run_profile_operation(profile, policy, known, "backup")
    if not backup.succeeded:
        return DrillObservation(backup, None, at_backup, {}, (), None, {}, previous_age)
    if change is not None:
        change()
    at_drill = _table_counts(profile, policy, known)
    changed = tuple(sorted(t for t in at_drill if at_drill.get(t) != at_backup.get(t)))
    drill = run_profile_operation(profile, policy, known, "restore_drill")
    entries = read_drill_log(log_path)
    entry = entries[-1] if len(entries) > len(earlier) else None
    restored = restored_counts(entry) if entry is not None else {}
    return DrillObservation(backup, drill, at_backup, at_drill, changed, entry, restored,
                            previous_age)
