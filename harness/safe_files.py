"""One way to read a file the user names: regular files only, size-capped, never blocking.

Every path that reaches the harness from its user (the profile, the policy, the
waivers, attestations, secret files, the signing key, and ``verify``'s inputs)
is read here. A FIFO would block the open or the read forever, a device such as
``/dev/zero`` never ends, a directory is no file: each is refused with one line
before a byte is read. The file is opened with ``O_NONBLOCK | O_NOCTTY``, so
neither a FIFO without a writer nor a terminal can stall or capture the run, and
``fstat`` on the open descriptor (not the path, which could be swapped in
between) decides what it is.

Secret files (passwords, PINs) are held to more, as ssh holds private keys:
opened with ``O_NOFOLLOW`` (a symbolic link to ``/etc/shadow`` is refused, not
followed), refused when group or others may read them, and only their first
line is the secret.
"""

from __future__ import annotations

import enum
import os
import stat
from pathlib import Path


class FileRefused(Exception):
    """A named file was not read: it is not a regular file, too large, unreadable or unsafe.

    Attributes:
        path: the file.
        what: what the file was meant to be (``policy``, ``database.password``).
        reason: why it was refused, without the path (e.g. ``a FIFO, not a regular file``).
    """

    def __init__(self, path: Path, what: str, reason: str) -> None:
        super().__init__(f"{path}: the {what} was not read: {reason}")
        self.path = path
        self.what = what
        self.reason = reason


class Cap(enum.IntEnum):
    """Largest size accepted for each kind of file, in bytes.

    Attributes:
        TOML: profiles, policies, waivers, catalogues (the bundled catalogue is ~40 KB).
        SECRET: a password or PIN file (its first line is used).
        KEY: a PEM key file.
        ATTESTATION: a human attestation (a signed PDF fits).
        MANIFEST: a bundle's manifest.json (about 200 bytes per listed file).
        SIGNATURE: a bundle's base64 signature.
    """

    TOML = 4 << 20
    SECRET = 64 << 10
    KEY = 64 << 10
    ATTESTATION = 32 << 20
    MANIFEST = 64 << 20
    SIGNATURE = 4 << 10


_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a directory"),
          (stat.S_ISSOCK, "a socket"))


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _open(path: Path, what: str, *, follow: bool) -> int:
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    if not follow:
        flags |= os.O_NOFOLLOW
    try:
        return os.open(path, flags)
    except OSError as exc:
        if not follow and path.is_symlink():
            raise FileRefused(path, what, "it is a symbolic link; a secret file is read only "
                                          "where it is, never followed") from None
        raise FileRefused(path, what, exc.strerror or str(exc)) from None


def _checked_fd(path: Path, what: str, cap: int, *, secret: bool) -> tuple[int, int]:
    """Open ``path`` and check what it is; return the descriptor and its size."""
    fd = _open(path, what, follow=not secret)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FileRefused(path, what, f"it is {_kind(info.st_mode)}, not a regular file")
        if secret and info.st_mode & 0o077:
            raise FileRefused(path, what, f"its mode is {stat.S_IMODE(info.st_mode):04o}: group or "
                                          f"others may read it (chmod 600 {path})")
        if info.st_size > cap:
            raise FileRefused(path, what, f"it holds {info.st_size} bytes, more than the "
                                          f"{cap} accepted")
    except BaseException:
        os.close(fd)
        raise
    return fd, info.st_size


def _read_fd(fd: int, path: Path, what: str, cap: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    try:
        while True:
            try:
                chunk = os.read(fd, min(1 << 20, cap + 1 - total))
            except OSError as exc:
                raise FileRefused(path, what, exc.strerror or str(exc)) from None
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > cap:
                # The file grew after fstat: still never more than the cap in memory.
                raise FileRefused(path, what, f"it holds more than the {cap} bytes accepted")
    finally:
        os.close(fd)
    return b"".join(chunks)


def check_file(path: Path, what: str, cap: int) -> None:
    """Refuse ``path`` unless it opens as a regular file of at most ``cap`` bytes (reads nothing).

    Raises:
        FileRefused: with the reason.
    """
    fd, _ = _checked_fd(path, what, cap, secret=False)
    os.close(fd)


def read_bytes(path: Path, what: str, cap: int) -> bytes:
    """The bytes of the regular file ``path``, at most ``cap`` of them.

    Raises:
        FileRefused: a FIFO, device, directory or socket; larger than ``cap``; unreadable.
    """
    fd, _ = _checked_fd(path, what, cap, secret=False)
    return _read_fd(fd, path, what, cap)


def read_text(path: Path, what: str, cap: int) -> str:
    """The UTF-8 text of the regular file ``path`` (see :func:`read_bytes`).

    Raises:
        FileRefused: as :func:`read_bytes`, or the bytes are not UTF-8.
    """
    data = read_bytes(path, what, cap)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise FileRefused(path, what, "it is not UTF-8 text") from None


def read_secret_line(path: Path, what: str) -> str:
    """The secret in ``path``: its first line, surrounding whitespace stripped.

    The file must be a regular file reached without a symbolic link as its last
    component, readable by its owner only (mode & 0o077 == 0), UTF-8, and its
    first line must not be blank. Nothing else of the file is returned.

    Raises:
        FileRefused: naming the file and the reason, never its content.
    """
    fd, _ = _checked_fd(path, what, Cap.SECRET, secret=True)
    data = _read_fd(fd, path, what, Cap.SECRET)
    first = data.split(b"\n", 1)[0]
    try:
        value = first.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise FileRefused(path, what, "its first line is not UTF-8 text") from None
    if not value:
        raise FileRefused(path, what, "its first line is empty")
    return value
