"""Backups, their retention and the restore drill, as the profile's operations expose them.

The probe runs the profile's operator commands (argv lists, no shell) with a
timeout, keeping only redacted output; it inspects backup files (markers of
an unencrypted dump, byte entropy, known secrets) and reads the drill log.
Nothing here judges: ``checks/at_rest.py`` does.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import os
import re
import subprocess
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
SAMPLE_BYTES = 4 * 1024 * 1024
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
    """

    name: str
    size: int
    sampled: int
    markers: tuple[str, ...]
    encoding: str
    entropy_bits: float
    secret_hits: tuple[SweepHit, ...]


def inspect_backup(path: Path, sweep: SecretSweep, *,
                   sample_bytes: int = SAMPLE_BYTES) -> BackupInspection:
    """Markers, entropy and known secrets of one backup file (raises OSError if unreadable)."""
    with path.open("rb") as stream:
        sample = stream.read(sample_bytes)
    markers = tuple(name for name, marker in DUMP_MARKERS.items() if marker in sample)
    decoded = _decode_base64_lines(sample)
    encoding = "base64 lines" if decoded is not None else "binary"
    entropy = shannon_entropy(decoded if decoded is not None else sample)
    hits = tuple(sweep.scan_file(path, location=path.name))
    return BackupInspection(path.name, path.stat().st_size, len(sample), markers, encoding,
                            round(entropy, 3), hits)


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
