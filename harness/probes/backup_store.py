"""The backup store as found: every entry, recorded before the audit acts on the store.

An audit that takes a fresh backup, plants aged copies and runs the operator's
prune changes the store it is about to judge. So the first at-rest backup check
records the store once per run, before any of that (:func:`store_as_found`):
every entry at any depth (regular files, directories, symlinks, FIFOs, sockets,
devices: only regular files are opened, and never through a symlink), and for
each regular file its size, modification time, the date in its name, the
format its leading bytes show, unencrypted-dump markers, what a compressed
prefix holds, the entropy of a bounded sample and the known secrets in a
bounded prefix. Memory stays bounded: one sample per file at a time, the
known-secret search streamed, at most :data:`MAX_ENTRIES` entries.

The content inspection is the one the fresh backup gets too
(:func:`inspect_backup`). Nothing here judges: ``checks/at_rest/backup_*.py`` do.
"""

from __future__ import annotations

import base64
import binascii
import bz2
import calendar
import io
import lzma
import os
import re
import stat
import time
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.key_needles import shannon_entropy
from harness.outcomes import ProbeError
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
#: Leading bytes of encrypted formats other than the service's own.
OTHER_ENCRYPTED_MAGIC: dict[str, bytes] = {
    "age": b"age-encryption.org/v1\n",
    "openssl enc": b"Salted__",
    "OpenPGP armored message": b"-----BEGIN PGP MESSAGE-----",
}
#: The service's encrypted backup format: lines of Fernet tokens.
SERVICE_FORMAT = "Fernet token lines"
#: Formats that are plainly not encrypted.
PLAIN_FORMATS = ("PostgreSQL custom-format dump (PGDMP)", "plain SQL dump", "text")
#: Archive and compression formats: readable by anyone.
CONTAINER_FORMATS = (*COMPRESSION_MAGIC, "tar")
#: Bytes read from the start of a file for its format, markers and entropy.
SAMPLE_BYTES = 4 * 1024 * 1024
#: Bytes of a file in the store searched for known secrets (the fresh backup: all of it).
STORE_SECRET_SCAN_BYTES = 256 * 1024 * 1024
#: How many decompressed bytes are looked at to confirm what a compressed file holds.
DECOMPRESSED_PREFIX = 1024 * 1024
#: Bounds on the walk of the store.
MAX_ENTRIES = 10_000
MAX_DEPTH = 8
_READ_CHUNK = 1024 * 1024
#: A ``YYYYmmddTHHMMSSZ`` stamp in a backup's name.
NAME_TIMESTAMP = re.compile(r"\d{8}T\d{6}Z")
_BASE64_LINE = re.compile(rb"^[A-Za-z0-9+/_=-]*$")
_FERNET_LINES = re.compile(rb"(?:gAAAAA[A-Za-z0-9_-]+=*\n)+(?:g[A-Za-z0-9_-]*=*)?")
_TEXT_BYTES = frozenset(range(0x20, 0x7F)) | {0x09, 0x0A, 0x0D}


def _decode_base64_lines(data: bytes, *, cut: bool) -> bytes | None:
    """The decoded bytes when ``data`` is lines of base64 (either alphabet), else None.

    When the sample was ``cut`` from a longer file, its last line is decoded up to
    its last whole group of four characters.
    """
    lines = [line.strip() for line in data.splitlines() if line.strip()]
    if not lines or not all(_BASE64_LINE.match(line) for line in lines):
        return None
    if cut:
        lines[-1] = lines[-1][:len(lines[-1]) // 4 * 4]
    decoded = bytearray()
    for line in lines:
        try:
            decoded += base64.b64decode(line.replace(b"-", b"+").replace(b"_", b"/")
                                        + b"=" * (-len(line) % 4))
        except (binascii.Error, ValueError):
            return None
    return bytes(decoded)


def _is_fernet_token(token: bytes) -> bool:
    # Version 0x80, 8-byte time, 16-byte IV, whole AES blocks, 32-byte HMAC.
    try:
        raw = base64.urlsafe_b64decode(token)
    except (binascii.Error, ValueError):
        return False
    return len(raw) >= 73 and raw[0] == 0x80 and (len(raw) - 57) % 16 == 0


def format_of(sample: bytes, *, cut: bool) -> str:
    """The format the leading bytes of a file show.

    ``cut`` says the sample is a prefix of a longer file (its last line may be
    incomplete). Returns :data:`SERVICE_FORMAT`, a format of
    :data:`PLAIN_FORMATS`, :data:`CONTAINER_FORMATS` or
    :data:`OTHER_ENCRYPTED_MAGIC`, ``empty`` or ``unknown``.
    """
    if not sample:
        return "empty"
    if sample.startswith(b"PGDMP"):
        return "PostgreSQL custom-format dump (PGDMP)"
    compression = compression_of(sample)
    if compression:
        return compression
    if sample[257:262] == b"ustar":
        return "tar"
    for name, magic in OTHER_ENCRYPTED_MAGIC.items():
        if sample.startswith(magic):
            return name
    if _FERNET_LINES.fullmatch(sample):
        lines = sample.split(b"\n")
        complete, last = lines[:-1], lines[-1]
        # A whole file ends with a newline; only a cut sample may end inside a line.
        if complete and (cut or not last) and all(_is_fernet_token(line) for line in complete):
            return SERVICE_FORMAT
    if all(byte in _TEXT_BYTES for byte in sample[:64 * 1024]):
        return "plain SQL dump" if dump_markers(sample) else "text"
    return "unknown"


def compression_of(sample: bytes) -> str:
    """The compression format whose magic number ``sample`` starts with, or ``""``."""
    return next((name for name, magic in COMPRESSION_MAGIC.items() if sample.startswith(magic)),
                "")


def dump_markers(data: bytes) -> tuple[str, ...]:
    """Names of the unencrypted-dump markers found in ``data``."""
    return tuple(name for name, marker in DUMP_MARKERS.items() if marker in data)


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
        name: the file's name (its path inside the store, for an entry of the store).
        size: its size in bytes.
        sampled: how many leading bytes were sampled for format, markers and entropy.
        markers: names of unencrypted-dump markers found in the sample.
        encoding: ``binary`` or ``base64 lines`` (ciphertext is often stored as text).
        entropy_bits: bits per byte of the sample (of its decoded bytes for base64 lines).
        secret_hits: known secrets found in the bytes searched.
        compression: the compression format the file starts with (``gzip``,
            ``zstd``, ``xz``, ``bzip2``, ``zip``), or ``""``.
        decompressed: how many bytes of the compressed file's prefix could be
            decompressed here (0 when none could).
        decompressed_markers: unencrypted-dump markers in that decompressed prefix.
        format: what the leading bytes show (see :func:`format_of`).
        secrets_searched: how many bytes were searched for known secrets
            (the whole file unless it is larger than the bound).
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
    format: str = "unknown"
    secrets_searched: int = 0


def _open_regular(path: Path) -> tuple[int, os.stat_result]:
    """A read descriptor on ``path`` if it is a regular file; OSError otherwise.

    Opened without following a symlink and without blocking (a FIFO would block
    an ordinary open), then checked on the descriptor itself, so a file swapped
    after it was listed is not read either.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise OSError(f"{path.name} is not a regular file")
    return fd, info


def _read_up_to(stream: io.BufferedReader, limit: int) -> bytes:
    parts = []
    left = limit
    while left > 0 and (chunk := stream.read(min(_READ_CHUNK, left))):
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def inspect_backup(path: Path, sweep: SecretSweep, *, name: str | None = None,
                   sample_bytes: int = SAMPLE_BYTES,
                   secret_scan_bytes: int | None = None) -> BackupInspection:
    """Format, markers, compression, entropy and known secrets of one regular file.

    Known secrets are searched in the first ``secret_scan_bytes`` (all of the file
    when None), streamed. Raises OSError if the file is unreadable or not a
    regular file.
    """
    fd, info = _open_regular(path)
    with os.fdopen(fd, "rb") as stream:
        sample = _read_up_to(stream, sample_bytes)
        limit = info.st_size if secret_scan_bytes is None else secret_scan_bytes

        def chunks() -> Iterator[bytes]:
            yield sample[:limit]
            left = limit - len(sample)
            while left > 0 and (chunk := stream.read(min(_READ_CHUNK, left))):
                left -= len(chunk)
                yield chunk

        label = name or path.name
        hits = tuple(sweep.scan_stream(chunks(), label))
    searched = min(limit, info.st_size)
    cut = len(sample) < info.st_size
    compression = compression_of(sample)
    inner = decompress_prefix(sample, compression) if compression else None
    decoded = _decode_base64_lines(sample, cut=cut)
    encoding = "base64 lines" if decoded is not None else "binary"
    entropy = shannon_entropy(decoded if decoded is not None else sample)
    return BackupInspection(label, info.st_size, len(sample), dump_markers(sample), encoding,
                            round(entropy, 3), hits, compression, len(inner or b""),
                            dump_markers(inner) if inner else (), format_of(sample, cut=cut),
                            searched)


@dataclass(frozen=True)
class StoreEntry:
    """One entry of the backup store, as found.

    Attributes:
        path: its path inside the store (``a/b.dump`` for a file in a subdirectory).
        kind: ``file``, ``directory``, ``symlink``, ``fifo``, ``socket``, ``device``
            or ``other``; only files are opened.
        size: its size in bytes (of the link itself for a symlink).
        mtime: its modification time (epoch seconds, of the link itself for a symlink).
        name_time: the time a ``YYYYmmddTHHMMSSZ`` stamp in its name says (epoch
            seconds), or None when its name carries none.
        link_target: where a symlink points (not followed), else ``""``.
        content: what a file's bytes show; None for any other kind or an unreadable file.
        error: why a file could not be read, else ``""``.
    """

    path: str
    kind: str
    size: int
    mtime: float
    name_time: float | None = None
    link_target: str = ""
    content: BackupInspection | None = None
    error: str = ""


@dataclass(frozen=True)
class StoreObservation:
    """The backup store as found, before the audit made, planted or pruned anything in it.

    Attributes:
        directory: the store (the profile's ``operations.backup_dir``).
        observed_at: when it was listed (epoch seconds).
        entries: every entry found, at any depth, in path order.
        truncated: the walk stopped at :data:`MAX_ENTRIES` entries or
            :data:`MAX_DEPTH` levels, so some entries were not seen.
        error: why the store could not be listed, else ``""``.
        secret_scan_bytes: the bound on bytes of each file searched for known secrets.
        missing: the store's directory did not exist (no backup was ever taken there).
    """

    directory: str
    observed_at: float
    entries: tuple[StoreEntry, ...]
    truncated: bool = False
    error: str = ""
    secret_scan_bytes: int = STORE_SECRET_SCAN_BYTES
    missing: bool = False

    @property
    def files(self) -> tuple[StoreEntry, ...]:
        """The regular files."""
        return tuple(e for e in self.entries if e.kind == "file")


def name_time(name: str) -> float | None:
    """The epoch seconds of a ``YYYYmmddTHHMMSSZ`` stamp in ``name``, or None."""
    match = NAME_TIMESTAMP.search(name)
    if match is None:
        return None
    try:
        return float(calendar.timegm(time.strptime(match.group(0), "%Y%m%dT%H%M%SZ")))
    except ValueError:
        return None


def _kind(mode: int) -> str:
    kinds = ((stat.S_ISREG, "file"), (stat.S_ISDIR, "directory"), (stat.S_ISLNK, "symlink"),
             (stat.S_ISFIFO, "fifo"), (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "device"),
             (stat.S_ISBLK, "device"))
    return next((name for test, name in kinds if test(mode)), "other")


def walk_store(directory: Path, *, max_entries: int = MAX_ENTRIES,
               max_depth: int = MAX_DEPTH) -> tuple[list[tuple[str, Path, os.stat_result]], bool]:
    """Every entry under ``directory`` (lstat only, symlinks not followed), and whether the
    walk was cut at a bound. Raises OSError if ``directory`` itself cannot be listed."""
    found: list[tuple[str, Path, os.stat_result]] = []
    truncated = False
    pending: list[tuple[Path, str, int]] = [(directory, "", 0)]
    while pending:
        where, prefix, depth = pending.pop()
        try:
            with os.scandir(where) as listing:
                children = sorted(listing, key=lambda e: e.name)
        except OSError:
            if where == directory:
                raise
            continue
        for child in children:
            if len(found) >= max_entries:
                return found, True
            try:
                info = child.stat(follow_symlinks=False)
            except FileNotFoundError:
                # Gone between the listing and its stat (the operator's prune, say).
                continue
            relative = prefix + child.name
            found.append((relative, Path(child.path), info))
            if stat.S_ISDIR(info.st_mode):
                if depth + 1 >= max_depth:
                    truncated = True
                else:
                    pending.append((Path(child.path), relative + "/", depth + 1))
    return sorted(found, key=lambda item: item[0]), truncated


def observe_store(directory: Path, known: KnownSecrets, *, now: float | None = None,
                  max_entries: int = MAX_ENTRIES, sample_bytes: int = SAMPLE_BYTES,
                  secret_scan_bytes: int = STORE_SECRET_SCAN_BYTES) -> StoreObservation:
    """Record every entry of the store and what each regular file's bytes show."""
    observed_at = time.time() if now is None else now
    if not os.path.lexists(directory):
        return StoreObservation(str(directory), observed_at, (), missing=True)
    try:
        listed, truncated = walk_store(directory, max_entries=max_entries)
    except OSError as exc:
        return StoreObservation(str(directory), observed_at, (),
                                error=f"{directory} cannot be listed: {exc.strerror or exc}")
    sweep = SecretSweep.from_known(known)
    entries = []
    for relative, path, info in listed:
        kind = _kind(info.st_mode)
        stamp = name_time(path.name)
        if kind == "symlink":
            try:
                target = os.readlink(path)
            except OSError as exc:
                target = f"(unreadable: {exc.strerror})"
            entries.append(StoreEntry(relative, kind, info.st_size, info.st_mtime, stamp,
                                      link_target=target))
            continue
        if kind != "file":
            entries.append(StoreEntry(relative, kind, info.st_size, info.st_mtime, stamp))
            continue
        try:
            content = inspect_backup(path, sweep, name=relative, sample_bytes=sample_bytes,
                                     secret_scan_bytes=secret_scan_bytes)
        except FileNotFoundError:
            continue
        except OSError as exc:
            entries.append(StoreEntry(relative, kind, info.st_size, info.st_mtime, stamp,
                                      error=str(exc.strerror or exc)))
            continue
        entries.append(StoreEntry(relative, kind, info.st_size, info.st_mtime, stamp,
                                  content=content))
    return StoreObservation(str(directory), observed_at, tuple(entries), truncated,
                            secret_scan_bytes=secret_scan_bytes)


def list_store(directory: Path, now: float) -> StoreObservation:
    """The store's entries with their names, sizes and times only (no file is opened).

    Raises OSError if ``directory`` cannot be listed.
    """
    listed, truncated = walk_store(directory)
    return StoreObservation(str(directory), now, tuple(
        StoreEntry(relative, _kind(info.st_mode), info.st_size, info.st_mtime,
                   name_time(path.name)) for relative, path, info in listed), truncated)


def entries_older_than(store: StoreObservation, days: float, now: float) -> tuple[str, ...]:
    """Entries of ``store`` older than ``days`` at ``now`` by their modification time or by
    the date in their name (a directory is judged by what it holds, not its own time)."""
    limit = now - days * 86400
    return tuple(e.path for e in store.entries if e.kind != "directory" and (
        e.mtime < limit or (e.name_time is not None and e.name_time < limit)))


_AS_FOUND = pytest.StashKey[dict[str, StoreObservation]]()


def store_as_found(request: pytest.FixtureRequest, profile: TargetProfile,
                   known: KnownSecrets) -> StoreObservation:
    """The profile's backup store (``operations.backup_dir``) as the run first found it:
    observed at the first call of the run, then kept.

    The first at-rest backup check calls this before it makes a backup, so that
    what every later check judges is the store before the audit touched it.

    Raises:
        ProbeError: the profile names no backup store.
    """
    directory = profile.operations.backup_dir
    if directory is None:
        raise ProbeError("the profile names no operations.backup_dir")
    seen = request.config.stash.setdefault(_AS_FOUND, {})
    key = str(directory)
    if key not in seen:
        seen[key] = observe_store(directory, known)
    return seen[key]
