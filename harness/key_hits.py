"""What the key search found and what it covered: its hits (a place, never a value) and its gaps.

:class:`KeySearchResult` is what ``keys.no_key_elsewhere`` and ``keys.read_at_start`` judge:
every hit, every place searched, and every entry that could not be (a :class:`SearchGap`,
a binary file, a file searched only in part), so that a partial search is never a PASS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: Where a hit was found.
Place = Literal["source", "config", "log", "env", "image"]
#: The skip reason of a file that looked binary: unlike an excluded path, it is a gap in what
#: was searched.
BINARY_FILE = "binary file"
#: Kinds of :class:`SearchGap` the walk records.
GapKind = Literal["dangling link", "link loop", "unreadable", "fifo", "socket", "character device",
                  "block device", "special file"]


@dataclass(frozen=True)
class SearchGap:
    """An entry under the searched roots that could not be read.

    Attributes:
        path: the entry as found under its root (a link's own path, not its target).
        kind: why it was not read (:data:`GapKind`).
        detail: the link's target, or the operating system's reason.
    """

    path: str
    kind: GapKind
    detail: str = ""

    def describe(self) -> str:
        return f"{self.path} ({self.kind}{': ' + self.detail if self.detail else ''})"


@dataclass(frozen=True)
class KeyHit:
    """One place where a key (or something shaped like one) was found.

    Attributes:
        kind: ``value`` (a real key from the HSM) or ``shape`` (key-shaped string).
        place: ``source``, ``config``, ``log`` or ``env``.
        where: ``path:line``, ``path@offset`` (logs) or ``process[pid N comm] $NAME``.
        what: the secret's label and encoding, or the shape's name.
        fingerprint: a non-reversible name of the matched bytes.
        fails: whether this hit breaks the promise.
    """

    kind: Literal["value", "shape"]
    place: Place
    where: str
    what: str
    fingerprint: str
    fails: bool = True

    def describe(self) -> str:
        return f"{self.what} in {self.place} {self.where}"


@dataclass(frozen=True)
class KeySearchResult:
    """What the search looked at and found.

    Attributes:
        hits: every hit, in search order.
        files_searched: number of files searched.
        bytes_searched: number of bytes searched in files.
        processes_searched: the processes whose environment was searched.
        skipped: (path, reason) of files and directories not searched.
        truncated: files searched only up to the size bound.
        truncated_at: (path, bytes searched) of each truncated file, so a verdict
            can say how much of it was searched.
        errors: places that could not be read, with the reason.
        gaps: entries under the file roots that could not be read (dangling links, link
            loops, refused permissions, FIFOs, sockets, devices).
        links_followed: the symbolic links followed (their own paths).
    """

    hits: tuple[KeyHit, ...] = ()
    files_searched: int = 0
    bytes_searched: int = 0
    processes_searched: tuple[str, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()
    truncated: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    truncated_at: tuple[tuple[str, int], ...] = ()
    gaps: tuple[SearchGap, ...] = ()
    links_followed: tuple[str, ...] = ()

    @property
    def failing(self) -> tuple[KeyHit, ...]:
        return tuple(hit for hit in self.hits if hit.fails)

    def merged(self, other: KeySearchResult) -> KeySearchResult:
        return KeySearchResult(
            hits=self.hits + other.hits,
            files_searched=self.files_searched + other.files_searched,
            bytes_searched=self.bytes_searched + other.bytes_searched,
            processes_searched=self.processes_searched + other.processes_searched,
            skipped=self.skipped + other.skipped,
            truncated=self.truncated + other.truncated,
            errors=self.errors + other.errors,
            truncated_at=self.truncated_at + other.truncated_at,
            gaps=self.gaps + other.gaps,
            links_followed=self.links_followed + other.links_followed,
        )

    @property
    def binary_skipped(self) -> tuple[str, ...]:
        """Files not searched because they looked binary (a gap in the coverage)."""
        return tuple(path for path, reason in self.skipped if reason == BINARY_FILE)

    def coverage(self) -> dict[str, object]:
        """A JSON-able summary of what was searched (for evidence)."""
        return {
            "files_searched": self.files_searched, "bytes_searched": self.bytes_searched,
            "processes_searched": list(self.processes_searched),
            "skipped": [f"{path}: {reason}" for path, reason in self.skipped],
            "truncated": list(self.truncated), "errors": list(self.errors),
            "gaps": [gap.describe() for gap in self.gaps],
            "links_followed": len(self.links_followed),
        }
