"""Backups, their retention and the restore drill, as the profile's operations expose them.

The probe runs the profile's operator commands (argv lists, no shell) with a
timeout, keeping only redacted output; it inspects backup files (markers of
an unencrypted dump, compression magic numbers, byte entropy, known secrets) and reads the drill log.
Nothing here judges: ``checks/at_rest.py`` does.
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
