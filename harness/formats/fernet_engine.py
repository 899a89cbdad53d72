"""Which engine judges whole blocks of Fernet token cells: native code, or the Python path.

The native engine (``votriz_fernet_native``, built from ``harness/formats/fernet_native/``
by ``./dev install``; Rust: RustCrypto's ``hmac``, ``sha2`` and ``aes``, ``base64``)
takes a block of ``COPY ... TO STDOUT`` text lines ``id[<TAB>part]<TAB>token...`` and
accepts, with the GIL released, the lines whose every token cell passes the same straight
path as :meth:`harness.formats.fernet.FernetRingVerifier.accept` (strict URL-safe base64,
version, whole blocks, time, HMAC under the ring in order, PKCS#7 padding under the
verifying key). It only ever accepts: every other line (an escape or NULL, a cell that
fails or is merely unusual) is handed back untouched, and the Python path gives each of
its cells its exact reason. So the native engine changes how fast a column is judged,
never what is said of a cell; the tests pin the two engines and ``cryptography``'s
Fernet together cell by cell.

Where the extension could not be built, or ``VOTRIZ_FERNET_ENGINE=python`` is set, the
Python path judges everything; :func:`engine_name` says which engine judged, for the
evidence. A module built from other sources than the checkout's (its ``SOURCES_DIGEST``, fixed
at build time, against :func:`sources_digest` of ``fernet_native/``: a rebuild that failed, or
sources changed since) is not used: the Python path judges, and the evidence says
``python (native module stale)``. The same module also counts repeated fingerprints for
:class:`harness.column_scans.DuplicateCounter` (split into buckets, then sorted), with the
same answer as its Python path, and judges joined bcrypt hashes a chunk at a time
(:func:`harness.formats.bcrypt_hash.lines_classifier`).
"""

from __future__ import annotations

import hashlib
import importlib
import os
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from harness.formats.fernet import FernetKey

#: Set to ``python`` to judge with the Python path even where the native engine is installed.
ENGINE_ENV = "VOTRIZ_FERNET_ENGINE"
NATIVE = "native"
#: The native module's interface this module uses (its ``INTERFACE``).
INTERFACE = 3
PYTHON = "python"
#: The engine where a native module is installed but was built from other sources.
STALE = "python (native module stale)"
#: The native engine's crate in the checkout.
NATIVE_CRATE = Path(__file__).with_name("fernet_native")
#: The crate's files besides ``src/*.rs`` that the module is built from.
BUILD_FILES = ("Cargo.lock", "Cargo.toml", "pyproject.toml")


def source_files(crate: Path = NATIVE_CRATE) -> list[str]:
    """The files a native build is made from, relative to ``crate``, in ``sha256sum``'s order."""
    return sorted([*BUILD_FILES, *(f"src/{path.name}" for path in (crate / "src").glob("*.rs"))])


def sources_digest(crate: Path = NATIVE_CRATE) -> str | None:
    """The SHA-256 of the ``sha256sum`` listing of :func:`source_files` (an auditor rechecks
    it in the crate with ``sha256sum Cargo.lock Cargo.toml pyproject.toml src/*.rs |
    sha256sum``); None where the crate is not there to read."""
    try:
        listing = "".join(f"{hashlib.sha256((crate / name).read_bytes()).hexdigest()}  {name}\n"
                          for name in source_files(crate))
    except OSError:
        return None
    return hashlib.sha256(listing.encode("utf-8")).hexdigest()


def installed_engine(native: ModuleType | None, checkout_digest: str | None
                     ) -> tuple[ModuleType | None, str]:
    """(the module to judge with, or None; the engine's name for the evidence) for the
    installed ``native`` module (None: not installed) and the checkout's sources' digest."""
    if native is None:
        return None, PYTHON
    # A build of other sources than these (./dev install rebuilds it when they change, and
    # removes it when the rebuild fails): the Python path judges, and says why.
    if (getattr(native, "INTERFACE", None) != INTERFACE or checkout_digest is None
            or getattr(native, "SOURCES_DIGEST", None) != checkout_digest):
        return None, STALE
    return native, NATIVE


def _installed() -> tuple[ModuleType | None, str]:
    if os.environ.get(ENGINE_ENV, "").strip().lower() == PYTHON:
        return None, PYTHON
    try:
        # Optional: built by ./dev install where a Rust toolchain is.
        native: ModuleType | None = importlib.import_module("votriz_fernet_native")
    except ImportError:
        native = None
    return installed_engine(native, sources_digest() if native is not None else None)


def native_module() -> ModuleType | None:
    """The native engine's module, or None where the Python path is to judge (not installed,
    turned off, or built from other sources than the checkout's)."""
    return _installed()[0]


def engine_name() -> str:
    """``native`` where the native engine is installed, fresh and not turned off; else
    ``python``, or :data:`STALE` where the module installed was built from other sources."""
    return _installed()[1]


#: What :meth:`CopyBlockJudge.judge` returns: accepted lines per part, per token column the
#: cells each key verified and their fingerprints end to end, and the lines handed back.
BlockVerdict = tuple[list[int], list[list[int]], list[bytes], bytes]


class CopyBlockJudge:
    """The native engine over one key ring at one time, for lines with ``columns`` token cells.

    Attributes:
        parts: the named parts then the last (``other``), as a :class:`FernetTally` has them;
            None when the lines have no part field.
        columns: token cells on each line, after the id (and the part).
    """

    def __init__(self, native: ModuleType, keys: Sequence[FernetKey], *, now: float,
                 max_clock_skew_s: float, ttl_s: float | None = None,
                 parts: Sequence[str] | None = None, columns: int = 1) -> None:
        self.parts = tuple(parts) if parts is not None else None
        self.columns = columns
        # The same expression as FernetRingVerifier's, so that a boundary is judged alike.
        latest = now + max_clock_skew_s
        named = list(self.parts[:-1]) if self.parts is not None else None
        self._judge: Any = native.BlockJudge([key.raw for key in keys], float(now),
                                             float(latest), ttl_s, named, columns).judge

    def judge(self, block: bytes) -> BlockVerdict:
        """Judge a block of whole lines (see :data:`BlockVerdict`); never raises on any bytes."""
        return self._judge(block)  # type: ignore[no-any-return]


def block_judge(keys: Sequence[FernetKey], *, now: float, max_clock_skew_s: float,
                ttl_s: float | None = None, parts: Sequence[str] | None = None,
                columns: int = 1) -> CopyBlockJudge | None:
    """A :class:`CopyBlockJudge`, or None where the Python path judges (no native engine)."""
    native = native_module()
    if native is None:
        return None
    return CopyBlockJudge(native, keys, now=now, max_clock_skew_s=max_clock_skew_s, ttl_s=ttl_s,
                          parts=parts, columns=columns)
