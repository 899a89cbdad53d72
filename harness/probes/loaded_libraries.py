"""The loaded-libraries probe: which native AES implementations the service's processes have mapped.

For each process the platform can see, the probe reads ``/proc/PID/maps`` and
looks at every native Python module mapped there: a file whose name ends in
``.so`` that lies in a package directory (site-packages, dist-packages,
lib-dynload; pycryptodome's ``_raw_aes*.so`` are plain libraries loaded through
ctypes or cffi) or defines a ``PyInit_`` entry point. cryptography's Rust
binding (``cryptography/hazmat/bindings/_rust*.so``) is recognised by its
path, with the version named by the ``cryptography-*.dist-info`` beside it.
Any other such module is read (through ``/proc/PID/map_files``, so a
container's file is read as the process mapped it, else through
``/proc/PID/root``) and counts as an AES implementation when it carries the
constant tables of a table-driven AES (the S-box, its inverse, or the T-tables
Te0/Te4) or its file name names AES or Fernet. An extension module exports
only its ``PyInit_`` entry (a Rust one nothing else), so symbols say little;
the tables are what a software AES carries. Versioned libraries (``*.so.3``),
such as the OpenSSL that the interpreter's ``ssl`` and libpq use, are not
Python modules and are not judged.

What it cannot see: AES written in pure Python, AES reached through ctypes in
a shared OpenSSL (which the interpreter's own ``ssl`` and ``hashlib`` map
anyway), and an AES-NI-only or bitsliced module without tables whose name
does not say AES. Reads are bounded: ``MAX_MAPS_BYTES`` of a maps file,
``MAX_MODULE_BYTES`` of a module; each file is read once per observation,
however many processes map it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.platform.base import OutOfReach, Platform
from harness.probes.processes import PROC, ProcessObservation

#: Bound of one ``/proc/PID/maps`` read (an API process maps a few thousand lines).
MAX_MAPS_BYTES = 8 << 20
#: Bound of one extension module read; a longer one is examined up to here, with a note.
MAX_MODULE_BYTES = 256 << 20
#: Bound of the entries listed in a site-packages directory for cryptography's dist-info.
MAX_LISTED_ENTRIES = 20_000
_CHUNK = 1 << 20

#: Constant tables of a table-driven AES, by what they are.
AES_TABLES: dict[str, bytes] = {
    "the AES S-box": bytes.fromhex("637c777bf26b6fc53001672bfed7ab76"),
    "the AES inverse S-box": bytes.fromhex("52096ad53036a538bf40a39e81f3d7fb"),
    "the AES T-table Te0 (little-endian)": bytes.fromhex("a56363c6847c7cf8997777ee8d7b7bf6"),
    "the AES T-table Te0 (big-endian)": bytes.fromhex("c66363a5f87c7c84ee777799f67b7b8d"),
    "the AES T-table Te4": bytes.fromhex("636363637c7c7c7c777777777b7b7b7b"),
}
_OVERLAP = max(len(table) for table in AES_TABLES.values()) - 1
_CRYPTOGRAPHY_BINDING = re.compile(r"/cryptography/hazmat/bindings/_rust[^/]*\.so$")
_AES_NAME = re.compile(r"aes|fernet", re.IGNORECASE)
_PACKAGE_ROOTS = ("/site-packages/", "/dist-packages/")
_MODULE_DIRS = (*_PACKAGE_ROOTS, "/lib-dynload/")


@dataclass(frozen=True)
class Mapping:
    """One file-backed mapping of a process, as ``/proc/PID/maps`` lists it.

    Attributes:
        start: the mapping's first address, in hex as the kernel writes it.
        end: the address after its last, in hex.
        inode: the mapped file's inode (0 for anonymous mappings).
        path: the file's path in the process's mount namespace (without `` (deleted)``).
        deleted: the kernel marks the file deleted since it was mapped.
    """

    start: str
    end: str
    inode: int
    path: str
    deleted: bool = False


@dataclass(frozen=True)
class NativeModule:
    """A native Python module that implements AES, other than cryptography's binding.

    Attributes:
        path: its path as the process mapped it.
        package: the top-level package it belongs to (the directory under
            site-packages or dist-packages), or its directory otherwise.
        signs: why it counts as AES: the tables found in it, its file name.
    """

    path: str
    package: str
    signs: tuple[str, ...]

    def describe(self) -> str:
        """``Cryptodome/Cipher/_raw_aes.abi3.so (package Cryptodome: the AES S-box)``."""
        return f"{short_path(self.path)} (package {self.package}: {', '.join(self.signs)})"


@dataclass(frozen=True)
class ProcessLibraries:
    """What one process has mapped.

    Attributes:
        where: the process as evidence names it (``api/child[pid 12 gunicorn]``).
        pid: its pid on the auditor's host.
        python: it runs Python (its executable is ``python*`` or it maps a native Python module).
        cryptography: the path of cryptography's Rust binding it maps, or None.
        cryptography_version: the version named by the dist-info beside that binding,
            or None when it could not be read.
        other_aes: the other native Python modules it maps that implement AES.
        native_modules: how many native Python modules it maps in all.
        unexamined: modules that could not be read in full, each with why.
    """

    where: str
    pid: int
    python: bool
    cryptography: str | None = None
    cryptography_version: str | None = None
    other_aes: tuple[NativeModule, ...] = ()
    native_modules: int = 0
    unexamined: tuple[str, ...] = ()


@dataclass(frozen=True)
class LoadedLibraries:
    """The native AES implementations the service's processes have loaded.

    Attributes:
        processes: each process whose maps were read.
        vanished: processes that ended while the probe looked (skipped), by ``where``.
        unreadable: processes whose maps could not be read, each with why.
        modules_read: how many distinct module files were read.
        bytes_read: how many bytes of them were read.
    """

    processes: tuple[ProcessLibraries, ...]
    vanished: tuple[str, ...] = ()
    unreadable: tuple[str, ...] = ()
    modules_read: int = 0
    bytes_read: int = 0


def short_path(path: str) -> str:
    """The path from its package root on (``Cryptodome/Cipher/_raw_aes.abi3.so``), else the path."""
    for root in _PACKAGE_ROOTS:
        if root in path:
            return path.rsplit(root, 1)[1]
    return path


def package_of(path: str) -> str:
    """The top-level package of a module path, or its directory outside site-/dist-packages."""
    for root in _PACKAGE_ROOTS:
        if root in path:
            return path.rsplit(root, 1)[1].split("/", 1)[0]
    return os.path.dirname(path) or path


def parse_maps(text: str) -> list[Mapping]:
    """The file-backed mappings of a ``/proc/PID/maps`` text, in order; other lines are skipped.

    A line is ``START-END PERMS OFFSET DEV INODE [PATH]``; the path may hold spaces and
    end in `` (deleted)``. Pseudo-paths (``[heap]``, ``[vdso]`` ...) and anonymous
    mappings (inode 0) are not files and are left out.
    """
    found: list[Mapping] = []
    for line in text.splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) < 6 or "-" not in parts[0] or not parts[4].isdigit():
            continue
        inode, path = int(parts[4]), parts[5].rstrip("\n")
        if inode == 0 or not path.startswith("/"):
            continue
        deleted = path.endswith(" (deleted)")
        if deleted:
            path = path[: -len(" (deleted)")]
        start, _, end = parts[0].partition("-")
        found.append(Mapping(start, end, inode, path, deleted))
    return found


def tables_in(chunks: Iterator[bytes]) -> tuple[set[str], int, bool]:
    """(names of the AES tables found, bytes read, whether ``PyInit_`` occurs) over ``chunks``.

    Consecutive chunks overlap by the longest pattern less one byte, so a table
    split across two reads is still found.
    """
    found: set[str] = set()
    pyinit = False
    total = 0
    tail = b""
    for chunk in chunks:
        total += len(chunk)
        window = tail + chunk
        found.update(name for name, table in AES_TABLES.items() if table in window)
        pyinit = pyinit or b"PyInit_" in window
        tail = window[-_OVERLAP:]
    return found, total, pyinit


def _read_chunks(handle: int, limit: int) -> Iterator[bytes]:
    left = limit
    while left > 0:
        chunk = os.read(handle, min(_CHUNK, left))
        if not chunk:
            return
        left -= len(chunk)
        yield chunk


@dataclass
class _ModuleScan:
    """What one module file showed: tables, whether it is an extension module, a note."""

    tables: set[str]
    extension: bool
    note: str = ""


class _Reader:
    """Reads each module file once (keyed by device and inode) and remembers what it showed."""

    def __init__(self, proc: Path) -> None:
        self.proc = proc
        self.seen: dict[tuple[int, int], _ModuleScan] = {}
        self.bytes_read = 0

    def _open(self, pid: int, mapping: Mapping) -> int:
        # map_files opens exactly the file the process mapped, in its own mount
        # namespace; without CAP_SYS_ADMIN it is refused, then the process's root is tried.
        try:
            return os.open(self.proc / str(pid) / "map_files" / f"{mapping.start}-{mapping.end}",
                           os.O_RDONLY)
        except OSError:
            return os.open(f"{self.proc / str(pid) / 'root'}{mapping.path}", os.O_RDONLY)

    def scan(self, pid: int, mapping: Mapping) -> _ModuleScan:
        try:
            handle = self._open(pid, mapping)
        except OSError as exc:
            return _ModuleScan(set(), True, f"cannot open: {exc.strerror}")
        try:
            stat = os.fstat(handle)
            key = (stat.st_dev, stat.st_ino)
            if key in self.seen:
                return self.seen[key]
            tables, total, pyinit = tables_in(_read_chunks(handle, MAX_MODULE_BYTES))
        except OSError as exc:
            return _ModuleScan(set(), True, f"cannot read: {exc.strerror}")
        finally:
            os.close(handle)
        self.bytes_read += total
        note = (f"examined only its first {MAX_MODULE_BYTES:,} bytes"
                if stat.st_size > MAX_MODULE_BYTES else "")
        self.seen[key] = _ModuleScan(tables, pyinit, note)
        return self.seen[key]


def cryptography_version(pid: int, binding: str, *, proc: Path = PROC) -> str | None:
    """The version in the name of the ``cryptography-*.dist-info`` beside ``binding``, or None."""
    site = binding[: binding.rindex("/cryptography/hazmat/")]
    versions: list[str] = []
    try:
        with os.scandir(f"{proc / str(pid) / 'root'}{site}") as entries:
            for count, entry in enumerate(entries):
                if count >= MAX_LISTED_ENTRIES:
                    break
                match = re.fullmatch(r"cryptography-(.+)\.dist-info", entry.name)
                if match:
                    versions.append(match.group(1))
    except OSError:
        return None
    return ", ".join(sorted(versions)) or None


def _exe_is_python(pid: int, proc: Path) -> bool:
    try:
        return os.path.basename(os.readlink(proc / str(pid) / "exe")).startswith("python")
    except OSError:
        return False


def libraries_of(process: ProcessObservation, reader: _Reader, mappings: Sequence[Mapping]
                 ) -> ProcessLibraries:
    """What one process maps, judged module by module (each file read once through ``reader``)."""
    pid = process.pid
    binding: str | None = None
    other: list[NativeModule] = []
    unexamined: list[str] = []
    modules = 0
    done: set[str] = set()
    for mapping in mappings:
        if mapping.path in done or not mapping.path.endswith(".so"):
            continue
        done.add(mapping.path)
        if _CRYPTOGRAPHY_BINDING.search(mapping.path):
            binding = mapping.path
            modules += 1
            continue
        scan = reader.scan(pid, mapping)
        if not (scan.extension or any(d in mapping.path for d in _MODULE_DIRS)):
            continue
        modules += 1
        if scan.note:
            unexamined.append(f"{short_path(mapping.path)}: {scan.note}")
        signs = sorted(scan.tables)
        if _AES_NAME.search(os.path.basename(mapping.path)):
            signs.append("its file name names AES or Fernet")
        if signs:
            other.append(NativeModule(mapping.path, package_of(mapping.path), tuple(signs)))
    version = cryptography_version(pid, binding, proc=reader.proc) if binding else None
    return ProcessLibraries(
        where=process.where, pid=pid, python=modules > 0 or _exe_is_python(pid, reader.proc),
        cryptography=binding, cryptography_version=version, other_aes=tuple(other),
        native_modules=modules, unexamined=tuple(unexamined))


def observe_loaded_libraries(processes: Sequence[ProcessObservation], *, proc: Path = PROC
                             ) -> LoadedLibraries:
    """The native AES implementations each of ``processes`` has mapped.

    Entries without a pid (a container's configuration) are not processes and are
    skipped; a process that ended meanwhile is listed in ``vanished``.
    """
    reader = _Reader(proc)
    seen: list[ProcessLibraries] = []
    vanished: list[str] = []
    unreadable: list[str] = []
    for process in processes:
        if process.pid <= 0:
            continue
        try:
            with open(proc / str(process.pid) / "maps", "rb") as handle:
                text = handle.read(MAX_MAPS_BYTES).decode("utf-8", "replace")
        except (FileNotFoundError, ProcessLookupError):
            vanished.append(process.where)
            continue
        except OSError as exc:
            unreadable.append(f"{process.where}: cannot read /proc/{process.pid}/maps: {exc.strerror}")
            continue
        if not text:
            # A process that exited but is not yet reaped has an empty map.
            vanished.append(process.where)
            continue
        seen.append(libraries_of(process, reader, parse_maps(text)))
    return LoadedLibraries(tuple(seen), tuple(vanished), tuple(unreadable),
                           modules_read=len(reader.seen), bytes_read=reader.bytes_read)


def loaded_libraries_of(platform: Platform) -> LoadedLibraries | OutOfReach:
    """What the platform's processes have loaded, or why they cannot be seen."""
    processes = platform.processes()
    if isinstance(processes, OutOfReach):
        return processes
    return observe_loaded_libraries(processes)
