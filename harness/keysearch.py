"""The key search: where do keys that must live only in the HSM show up elsewhere?

Two kinds of needle are searched in the service's source and configuration
paths, its logs, and the environments of its running processes:

- the real key values read from the HSM, in every encoding
  :func:`harness.redaction.encodings` names (raw, base64 in both alphabets,
  hex), through the plaintext sweep's Aho-Corasick automaton
  (:class:`harness.sweep.SecretSweep`);
- key-shaped strings (Fernet keys, provider key prefixes, PEM private keys,
  long high-entropy values assigned to secret-sounding names), through the
  regular expressions of ``fixtures/policy/key-classes.toml``.

A hit names the place (``file:line``, ``log@offset``, ``process $VARIABLE``)
and what matched (the secret's label and form, or the shape's name) with a
fingerprint, never the value. The harness's own evidence directories and the HSM's
token directory are skipped and listed as skipped.

Symbolic links under the named roots (and a root that is one) are followed: a
Kubernetes secret or configmap volume is a tree of links. Each target is searched
once (by device and inode), so a loop or two links to one file cost nothing. Only
regular files are read, opened without blocking and checked with ``fstat``; every
entry that could not be read (a dangling link, a link loop, a permission refusal,
a FIFO, socket or device) is a :class:`SearchGap` of the result, as are binary
files and files past the size bound (``skipped`` / ``truncated_at``).
"""

from __future__ import annotations

import errno
import fnmatch
import itertools
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from harness.key_hits import BINARY_FILE, GapKind, KeyHit, KeySearchResult, Place, SearchGap
from harness.key_needles import is_mixed, shannon_entropy, short_assignments, short_needles, value_needles
from harness.probes.docker_engine import layer_files, own_distribution_files
from harness.probes.processes import ProcessObservation
from harness.redaction import fingerprint
from harness.sweep import SecretSweep, open_regular

_BINARY_SNIFF_BYTES = 8192
_NEWLINE = b"\n"
_NUL = b"\0"
# A certificate's body is base64 lines: a BEGIN that no END follows within them (a log line
# quoting a header) hides nothing after it, and no match scans past the first other character.
_CERTIFICATE = re.compile(rb"-----BEGIN (?:TRUSTED |X509 )?CERTIFICATE-----[A-Za-z0-9+/=\r\n\t ]{0,65536}?"
                          rb"-----END (?:TRUSTED |X509 )?CERTIFICATE-----")


class ShapeRule(BaseModel):
    """A regular expression for one shape of key.

    Attributes:
        name: the shape's name, shown in hits.
        regex: the expression; its first group (if any) is the secret part.
        min_entropy: minimum Shannon entropy (bits per character) of the secret part.
        mixed: the secret part needs a digit, an upper- and a lower-case letter.
        fails: whether a hit breaks the promise (else it is reported only).
        reason: why a hit does not fail, when ``fails`` is false.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    regex: str
    min_entropy: float = 0.0
    mixed: bool = False
    fails: bool = True
    reason: str = ""

    def compiled(self) -> re.Pattern[bytes]:
        return re.compile(self.regex.encode())


class SearchSettings(BaseModel):
    """The ``[search]`` section of ``key-classes.toml``.

    Attributes:
        hsm_process_names: profile process names that are the HSM itself.
        max_file_bytes: bytes searched per source or configuration file.
        max_log_bytes: bytes searched per log file.
        skip_dir_names: directory names never descended into.
        harmless_gap_kinds: kinds of :class:`SearchGap` that cannot hold a key and so do
            not make the search incomplete (a socket has no content to read).
        image_shape_skip: glob patterns (``fnmatch``, on the path inside the image) of the
            files of image layers where key shapes are not applied: the trees a package
            manager fills (an operating system's and its libraries' test data are full of
            key-shaped strings). Every file is still searched for the keys' values.
        shape: the key shapes searched for.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    hsm_process_names: tuple[str, ...] = ("hsm",)
    image_shape_skip: tuple[str, ...] = ()
    max_file_bytes: int = Field(16 << 20, gt=0)
    max_log_bytes: int = Field(64 << 20, gt=0)
    skip_dir_names: tuple[str, ...] = (".git", "__pycache__")
    harmless_gap_kinds: tuple[GapKind, ...] = ("socket",)
    shape: tuple[ShapeRule, ...] = ()


@dataclass
class _Walk:
    files: list[Path] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    gaps: list[SearchGap] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    # (st_dev, st_ino) of every directory and file already taken: each is searched once.
    seen: set[tuple[int, int]] = field(default_factory=set)


_SPECIAL_KINDS: tuple[tuple[Callable[[int], bool], GapKind], ...] = (
    (stat.S_ISFIFO, "fifo"), (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"))


def _special_kind(mode: int) -> GapKind:
    return next((kind for test, kind in _SPECIAL_KINDS if test(mode)), "special file")


def _certificate_spans(data: bytes) -> list[tuple[int, int]]:
    """Where ``data`` holds PEM certificates (public: no key shape inside one is a key)."""
    if b"CERTIFICATE-----" not in data:
        return []
    return [match.span() for match in _CERTIFICATE.finditer(data)]


def _os_reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


#: The most hits of known values one buffer yields (every one of them is a FAIL already).
MAX_HITS_PER_BUFFER = 10_000
_SCAN_WINDOW = 1 << 20


class _Lines:
    """Line numbers of offsets in one buffer, counted forward from the last one asked (the
    callers number their hits in offset order), so that many hits cost one pass, not one each."""

    def __init__(self, data: bytes) -> None:
        self._data, self._at, self._line = data, 0, 1

    def of(self, offset: int) -> int:
        if offset < self._at:
            self._at, self._line = 0, 1
        self._line += self._data.count(_NEWLINE, self._at, offset)
        self._at = offset
        return self._line


def _where(name: str, offset: int, lines: _Lines | None, base: int = 0) -> str:
    """``name:line`` when lines are numbered, else ``name@offset`` (``base``: where the
    buffer starts in its file)."""
    return f"{name}:{lines.of(offset)}" if lines is not None else f"{name}@{base + offset}"


class KeySearcher:
    """Searches bytes, files, logs and process environments for keys.

    Attributes:
        settings: bounds, skipped directories and shape rules.
        exclude: paths never searched (evidence directories, the HSM token directory).
    """

    def __init__(self, values: Iterable[tuple[str, bytes]], settings: SearchSettings, *,
                 exclude: Sequence[Path] = ()) -> None:
        self.settings = settings
        self.exclude = tuple(Path(os.path.abspath(path)) for path in exclude)
        values = list(values)
        needles = value_needles(values)
        self._short = short_needles(values)
        self._lengths = {label: len(needle) for needle, label in needles}
        self._sweep = SecretSweep(needles, hit_limit=10_000)
        self._shapes = [(rule, rule.compiled()) for rule in settings.shape]

    def scan(self, data: bytes, place: Place, name: str, *,
             line_numbers: bool) -> list[KeyHit]:
        """Every hit in one buffer; ``name`` is the file or ``process $VAR`` it came from."""
        hits: list[KeyHit] = []
        spans: list[tuple[int, int]] = []
        lines = _Lines(data) if line_numbers else None
        # Read in 1 MiB windows and stopped at the bound: a log of nothing but one PIN holds
        # millions of copies, and each one kept costs memory.
        windows = (data[at:at + _SCAN_WINDOW] for at in range(0, len(data), _SCAN_WINDOW))
        found = sorted(itertools.islice(self._sweep.scan_stream(windows, name), MAX_HITS_PER_BUFFER),
                       key=lambda hit: hit.offset)
        for hit in found:
            length = self._lengths[hit.label]
            spans.append((hit.offset, hit.offset + length))
            hits.append(KeyHit("value", place, _where(name, hit.offset, lines),
                               hit.label, fingerprint(data[hit.offset:hit.offset + length])))
        for span, short in self._short_hits(data, place, name, lines):
            spans.append(span)
            hits.append(short)
        hits.extend(self._shape_hits(data, place, name, line_numbers, spans))
        return hits

    def _short_hits(self, data: bytes, place: Place, name: str, lines: _Lines | None = None, *,
                    base: int = 0,
                    keep: tuple[int, int] | None = None) -> list[tuple[tuple[int, int], KeyHit]]:
        """Each short PIN given whole to a secret's name in ``data`` (:func:`short_assignments`),
        with its span; ``base`` and ``keep`` as for :meth:`_shape_hits`."""
        return [((start, end), KeyHit("value", place, _where(name, start, lines, base), label,
                                      fingerprint(data[start:end])))
                for start, end, label in short_assignments(data, self._short)
                if keep is None or keep[0] <= start < keep[1]]

    def _shape_hits(self, data: bytes, place: Place, name: str, line_numbers: bool,
                    spans: list[tuple[int, int]], *, base: int = 0,
                    keep: tuple[int, int] | None = None) -> list[KeyHit]:
        """The key-shaped strings of ``data`` outside ``spans`` (places named already) and
        outside certificates (a PEM certificate's base64 is public and key-shaped by chance:
        a line of 43 characters and one ``=`` is a Fernet key's shape). For a window of a
        larger file, ``base`` is its offset in the file and only matches starting in
        ``keep`` (offsets in ``data``) are kept: the rest is context, judged in its own window."""
        hits: list[KeyHit] = []
        spans = spans + _certificate_spans(data)
        lines = _Lines(data) if line_numbers else None
        for rule, pattern in self._shapes:
            for match in pattern.finditer(data):
                secret_span = match.span(1) if pattern.groups else match.span()
                if keep is not None and not keep[0] <= secret_span[0] < keep[1]:
                    continue
                secret = data[secret_span[0]:secret_span[1]]
                if rule.min_entropy and shannon_entropy(secret) < rule.min_entropy:
                    continue
                if rule.mixed and not is_mixed(secret):
                    continue
                # A real key found by value, or by an earlier (more specific)
                # shape, is named already.
                if any(start < secret_span[1] and secret_span[0] < end for start, end in spans):
                    continue
                spans.append(secret_span)
                hits.append(KeyHit("shape", place,
                                   _where(name, secret_span[0], lines, base),
                                   rule.name, fingerprint(secret), rule.fails))
        return hits

    def _windowed_shape_hits(self, fd: int, size: int, where: str,
                             value_spans: list[tuple[int, int]]) -> list[KeyHit]:
        """Key shapes (and short PINs given to a secret's name) in a layer file too large to read
        whole, window by window, up to ``max_log_bytes`` (the shapes cost ~0.3 s a MiB of text):
        each window is read with :data:`_SHAPE_CONTEXT` bytes on either side, so a key or a
        certificate across a window's edge is seen whole in the window where it starts."""
        hits: list[KeyHit] = []
        for start in range(0, min(size, self.settings.max_log_bytes), _SHAPE_WINDOW):
            lead = min(start, _SHAPE_CONTEXT)
            data = os.pread(fd, lead + _SHAPE_WINDOW + _SHAPE_CONTEXT, start - lead)
            base = start - lead
            spans = [(a - base, b - base) for a, b in value_spans if a < base + len(data) and b > base]
            hits += self._shape_hits(data, "image", where, False, spans, base=base,
                                     keep=(lead, lead + _SHAPE_WINDOW))
            hits += [hit for _, hit in self._short_hits(data, "image", where, base=base,
                                                        keep=(lead, lead + _SHAPE_WINDOW))]
        return hits

    def _shapes_apply_in_image(self, inside: str) -> bool:
        return not any(fnmatch.fnmatchcase(inside, pattern) for pattern in self.settings.image_shape_skip)

    def _excluded(self, path: Path) -> bool:
        absolute = Path(os.path.abspath(path))
        return any(absolute == ex or ex in absolute.parents for ex in self.exclude)

    def _walk(self, roots: Sequence[Path]) -> _Walk:
        """Every regular file under ``roots``, following symbolic links, each target once."""
        walk = _Walk()
        for root in roots:
            if self._excluded(root):
                walk.skipped.append((str(root), "excluded (harness evidence or HSM token store)"))
                continue
            if not os.path.lexists(root):
                walk.errors.append(f"{root}: not found")
                continue
            stack = [root]
            while stack:
                stack.extend(reversed(self._take(stack.pop(), walk)))
        return walk

    def _take(self, path: Path, walk: _Walk) -> list[Path]:
        """Record ``path`` (a file to read, a gap, a skip); the entries of a directory to walk next."""
        mode, target = 0, ""
        try:
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                target = os.readlink(path)
                walk.links.append(str(path))
            info = os.stat(path)
        except FileNotFoundError:
            walk.gaps.append(SearchGap(str(path), "dangling link", f"-> {target}")
                             if stat.S_ISLNK(mode) else SearchGap(str(path), "unreadable", "vanished"))
            return []
        except OSError as exc:
            loop = exc.errno == errno.ELOOP
            walk.gaps.append(SearchGap(str(path), "link loop" if loop else "unreadable", _os_reason(exc)))
            return []
        if stat.S_ISLNK(mode) and self._excluded(Path(os.path.realpath(path))):
            walk.skipped.append((str(path), "excluded (link into harness evidence or HSM token store)"))
            return []
        if stat.S_ISDIR(info.st_mode) and path.name in self.settings.skip_dir_names:
            # Said in the coverage: a deployment of compiled files only is not searched there.
            walk.skipped.append((str(path), f"directory named {path.name} (search.skip_dir_names)"))
            return []
        identity = (info.st_dev, info.st_ino)
        if identity in walk.seen:
            # A second link to a file or directory already searched, or a loop back to an ancestor.
            return []
        walk.seen.add(identity)
        if stat.S_ISREG(info.st_mode):
            walk.files.append(path)
            return []
        if not stat.S_ISDIR(info.st_mode):
            walk.gaps.append(SearchGap(str(path), _special_kind(info.st_mode)))
            return []
        try:
            names = sorted(os.listdir(path))
        except OSError as exc:
            walk.gaps.append(SearchGap(str(path), "unreadable", _os_reason(exc)))
            return []
        children = []
        for name in names:
            child = path / name
            if self._excluded(child):
                walk.skipped.append((str(child), "excluded (harness evidence or HSM token store)"))
                continue
            children.append(child)
        return children

    def _read(self, path: Path, limit: int) -> bytes | SearchGap:
        """Up to ``limit + 1`` bytes of a regular file; a gap for anything else.

        Opened without blocking (a FIFO put in the file's place since the walk would
        otherwise wait for a writer) and checked with ``fstat`` before reading.
        """
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
        except OSError as exc:
            return SearchGap(str(path), "unreadable", _os_reason(exc))
        try:
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                return SearchGap(str(path), _special_kind(mode))
            chunks: list[bytes] = []
            wanted = limit + 1
            while wanted > 0:
                chunk = os.read(fd, min(wanted, 1 << 20))
                if not chunk:
                    break
                chunks.append(chunk)
                wanted -= len(chunk)
            return b"".join(chunks)
        except OSError as exc:
            return SearchGap(str(path), "unreadable", _os_reason(exc))
        finally:
            os.close(fd)

    def search_files(self, roots: Sequence[Path], place: Place) -> KeySearchResult:
        """Search every text file under ``roots`` (files or directories), links followed."""
        limit = self.settings.max_log_bytes if place == "log" else self.settings.max_file_bytes
        walk = self._walk(roots)
        hits: list[KeyHit] = []
        truncated: list[str] = []
        truncated_at: list[tuple[str, int]] = []
        searched = 0
        total = 0
        for path in walk.files:
            data = self._read(path, limit)
            if isinstance(data, SearchGap):
                walk.gaps.append(data)
                continue
            if b"\0" in data[:_BINARY_SNIFF_BYTES]:
                walk.skipped.append((str(path), BINARY_FILE))
                continue
            if len(data) > limit:
                data = data[:limit]
                truncated.append(str(path))
                truncated_at.append((str(path), limit))
            searched += 1
            total += len(data)
            hits.extend(self.scan(data, place, str(path), line_numbers=place != "log"))
        return KeySearchResult(hits=tuple(hits), files_searched=searched, bytes_searched=total,
                               skipped=tuple(walk.skipped), truncated=tuple(truncated),
                               errors=tuple(walk.errors), truncated_at=tuple(truncated_at),
                               gaps=tuple(walk.gaps), links_followed=tuple(walk.links))

    def search_logs(self, logs: Iterable[tuple[str, bytes, bool]]) -> KeySearchResult:
        """Search logs held in memory (a container's output): (name, bytes, truncated)."""
        hits: list[KeyHit] = []
        truncated_at: list[tuple[str, int]] = []
        searched = total = 0
        for name, data, truncated in logs:
            searched += 1
            total += len(data)
            if truncated:
                truncated_at.append((name, len(data)))
            hits.extend(self.scan(data, "log", name, line_numbers=False))
        return KeySearchResult(hits=tuple(hits), files_searched=searched, bytes_searched=total,
                               truncated=tuple(name for name, _ in truncated_at),
                               truncated_at=tuple(truncated_at))

    def search_layers(self, layers: Sequence[tuple[str, Path]], *, workers: int = 2) -> KeySearchResult:
        """Every file of every image layer, binary ones included, for the keys' values.

        A real key is found by its value, in any file, at any size (large files are
        streamed). Key shapes are applied to the text files outside the trees a
        package manager fills (``image_shape_skip``: a layer holds a whole operating
        system, whose libraries and test data are full of key-shaped strings), and
        to the files of Python distributions installed there from a local directory
        or a VCS (the operator's own code in ``site-packages``), so
        that a key the HSM does not hold (a retired version, one never put there)
        baked into the service's own files is found too. Layers are searched
        ``workers`` at a time (the automaton releases the GIL).
        """
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            parts = list(pool.map(lambda layer: self._search_layer(*layer), layers))
        result = KeySearchResult()
        for part in parts:
            result = result.merged(part)
        return result

    def _search_layer(self, label: str, root: Path) -> KeySearchResult:
        hits: list[KeyHit] = []
        errors: list[str] = []
        searched = total = 0
        cut: list[tuple[str, int]] = []
        listed = [path for path, _size in layer_files(str(root), errors)]
        own = own_distribution_files(str(root), listed)
        for path in listed:
            inside = "/" + os.path.relpath(path, root)
            where = f"{label} {inside}"
            # Opened once, judged by what was opened and read from that descriptor: a FIFO or a
            # link put in the listed file's place is an error line, never a hang or another file.
            try:
                with open_regular(Path(path)) as stream:
                    fd = stream.fileno()
                    size = os.fstat(fd).st_size
                    if size <= _WHOLE_FILE_BYTES:
                        data = stream.readall()
                        found = self._sweep.scan_bytes(data, where)
                    else:
                        data = b""
                        found = list(self._sweep.scan_open_file(stream, where))
                    matches = [(hit, data[hit.offset:hit.offset + self._lengths[hit.label]] if data
                                else os.pread(fd, self._lengths[hit.label], hit.offset))
                               for hit in found]
                    spans = [(hit.offset, hit.offset + len(matched)) for hit, matched in matches]
                    text = bool(data) and _NUL not in data[:_BINARY_SNIFF_BYTES]
                    # A short PIN given to its name (an .env file baked in) is no package's data.
                    short = self._short_hits(data, "image", where) if text else []
                    spans += [span for span, _ in short]
                    shapes = [hit for _, hit in short]
                    if inside in own or self._shapes_apply_in_image(inside):
                        head = data[:_BINARY_SNIFF_BYTES] if data else os.pread(fd, _BINARY_SNIFF_BYTES, 0)
                        if head and _NUL not in head:
                            shapes += (self._shape_hits(data, "image", where, False, spans) if data
                                       else self._windowed_shape_hits(fd, size, where, spans))
                            if size > self.settings.max_log_bytes:
                                cut.append((f"{where} (by key shape; by value whole)",
                                            self.settings.max_log_bytes))
            except OSError as exc:
                errors.append(f"{where}: {exc.strerror or type(exc).__name__}")
                continue
            searched += 1
            total += size
            hits += [KeyHit("value", "image", f"{where}@{hit.offset}", hit.label, fingerprint(matched))
                     for hit, matched in matches]
            hits += shapes
        return KeySearchResult(hits=tuple(hits), files_searched=searched, bytes_searched=total,
                               errors=tuple(f"{label}: {error}" for error in errors),
                               truncated=tuple(path for path, _ in cut), truncated_at=tuple(cut))

    def search_processes(self, processes: Iterable[ProcessObservation]) -> KeySearchResult:
        """Search the environment of every process (variable names only in hits)."""
        hits: list[KeyHit] = []
        searched: list[str] = []
        errors: list[str] = []
        for process in processes:
            if process.environ_error:
                errors.append(f"{process.where}: {process.environ_error}")
                continue
            searched.append(process.where)
            for name, value in process.environ:
                line = name.encode() + b"=" + value
                for hit in self.scan(line, "env", f"{process.where} ${name}", line_numbers=False):
                    # The offset within one variable says nothing: drop it.
                    hits.append(KeyHit(hit.kind, hit.place, f"{process.where} ${name}", hit.what,
                                       hit.fingerprint, hit.fails))
        return KeySearchResult(hits=tuple(_unique(hits)), processes_searched=tuple(searched),
                               errors=tuple(errors))


# Layer files up to this size are read whole and searched in one call.
_WHOLE_FILE_BYTES = 8 << 20
# A larger text file is searched for key shapes in windows of this size, each read with this
# much of its neighbours on either side (more than a PEM private key or a certificate).
_SHAPE_WINDOW = 8 << 20
_SHAPE_CONTEXT = 64 << 10


def _unique(hits: Iterable[KeyHit]) -> Iterator[KeyHit]:
    seen: set[tuple[str, str, str]] = set()
    for hit in hits:
        key = (hit.where, hit.what, hit.fingerprint)
        if key not in seen:
            seen.add(key)
            yield hit


def search_target(source_paths: Sequence[Path], config_paths: Sequence[Path],
                  log_dir: Path | None, processes: Sequence[ProcessObservation] | None,
                  values: Iterable[tuple[str, bytes]], settings: SearchSettings, *,
                  exclude: Sequence[Path] = (), container_logs: Sequence[tuple[str, bytes, bool]] = (),
                  image_layers: Sequence[tuple[str, Path]] = ()) -> KeySearchResult:
    """Search a target's source, configuration, logs, process environments and images in one go.

    Args:
        source_paths, config_paths: the profile's ``[scan]`` paths.
        log_dir: the profile's log directory (None: no log files searched).
        processes: observed processes (None: environments not searched).
        values: (label, value) of the real keys.
        exclude: paths never searched (the harness's evidence, the HSM token store).
        container_logs: (name, bytes, truncated) of each container's output.
        image_layers: (name, directory) of each layer of the service's images.
    """
    searcher = KeySearcher(values, settings, exclude=exclude)
    result = searcher.search_files(source_paths, "source")
    result = result.merged(searcher.search_files(config_paths, "config"))
    if log_dir is not None:
        result = result.merged(searcher.search_files([log_dir], "log"))
    if container_logs:
        result = result.merged(searcher.search_logs(container_logs))
    if image_layers:
        result = result.merged(searcher.search_layers(image_layers))
    if processes is not None:
        result = result.merged(searcher.search_processes(processes))
    return result
